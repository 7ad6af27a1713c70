/* $title: layer descriptors (program memory), the arena plan and the forward pass. */
#include <float.h>

#include "jointnas_model.h"
#include "jointnas_runtime.h"
#include "jointnas_weights.h"

/* The one static activation arena ($arena_bytes bytes): offsets planned from tensor lifetimes. */
static union {
    uint8_t bytes[$arena_size];
    float align;
} jn_arena;
#define JN_AT(offset) ((void *)(jn_arena.bytes + (offset)))

$descriptors
$normalization
void *jn_input_area(void)
{
    return JN_AT($input_offset);
}

void jn_input_store(unsigned i, float raw)
{
$input_store
}

const float *jn_forward(void)
{
    JN_TRACE(-1, JN_AT($input_offset), $input_type, JOINTNAS_INPUT_SIZE);
$forward
    return (const float *)JN_AT($logits_offset);
}

int jointnas_predict(const float *input, float *scores)
{
    unsigned i;
    for (i = 0; i < JOINTNAS_INPUT_SIZE; ++i) jn_input_store(i, input[i]);
    return jn_argmax(jn_forward(), JOINTNAS_NUM_CLASSES, scores);
}
