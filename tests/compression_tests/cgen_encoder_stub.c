/* Stands in for the model behind jointnas_chat.c: records the encoder's features of every step and
 * "predicts" the characters of a fixed script, then the end symbol. Usage: encoder <script> <query>
 * prints, per step, the 256 features as hexadecimal float32 bit patterns. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "jointnas_model.h"
#include "jointnas_runtime.h"

static float features[JOINTNAS_INPUT_SIZE];
static uint8_t area[4 * JOINTNAS_INPUT_SIZE];
static float logits[JOINTNAS_NUM_CLASSES];
static const char *script;
static unsigned step;
static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789 .?";

void *jn_input_area(void) { return area; }

void jn_input_store(unsigned i, float raw) { features[i] = raw; }

int jn_argmax(const float *v, unsigned n, float *scores)
{
    unsigned i, best = 0;
    (void)scores;
    for (i = 1; i < n; ++i) {
        if (v[i] > v[best]) best = i;
    }
    return (int)best;
}

const float *jn_forward(void)
{
    unsigned i, k;
    uint32_t bits;
    for (i = 0; i < JOINTNAS_INPUT_SIZE; ++i) {
        memcpy(&bits, &features[i], sizeof bits);
        printf("%08lx%c", (unsigned long)bits, i + 1 < JOINTNAS_INPUT_SIZE ? ' ' : '\n');
    }
    for (k = 0; k < JOINTNAS_NUM_CLASSES; ++k) logits[k] = 0.0f;
    k = JOINTNAS_NUM_CLASSES - 1;
    if (script[step] != '\0') k = (unsigned)(strchr(alphabet, script[step]) - alphabet);
    logits[k] = 1.0f;
    ++step;
    return logits;
}

int main(int argc, char **argv)
{
    static char reply[128];
    if (argc != 3) return 2;
    script = argv[1];
    return jointnas_reply(argv[2], reply, (int)sizeof reply) == (int)strlen(script) ? 0 : 1;
}
