/* Test driver of the generated C library: classify every sample of a float32 file (raw values), write
 * the scores as float32. Usage: driver <samples.bin> <scores.bin> */
#include <stdio.h>

#include "jointnas_model.h"

int main(int argc, char **argv)
{
    static float sample[JOINTNAS_INPUT_SIZE];
    float scores[JOINTNAS_NUM_CLASSES];
    FILE *in, *out;
    if (argc != 3) return 2;
    in = fopen(argv[1], "rb");
    out = fopen(argv[2], "wb");
    if (in == NULL || out == NULL) return 3;
    while (fread(sample, sizeof(float), JOINTNAS_INPUT_SIZE, in) == JOINTNAS_INPUT_SIZE) {
        jointnas_predict(sample, scores);
        fwrite(scores, sizeof(float), JOINTNAS_NUM_CLASSES, out);
    }
    fclose(in);
    fclose(out);
    return 0;
}
