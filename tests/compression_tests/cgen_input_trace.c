/* Test driver: reply to one query and print the quantized input tensor of every step (JN_TRACE hook,
 * layer -1). Build with -DJN_TRACE(l,d,t,n)=jn_test_trace(l,d,t,n) and -include of this file's
 * prototype. Usage: input_trace <max_len> <query> */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "jointnas_model.h"

void jn_test_trace(int layer, const void *data, int type, unsigned count);

void jn_test_trace(int layer, const void *data, int type, unsigned count)
{
    unsigned i;
    if (layer != -1) return;
    for (i = 0; i < count; ++i) {
        double v;
        switch (type) {
        case 0: v = ((const float *)data)[i]; break;
        case 1: v = ((const int8_t *)data)[i]; break;
        case 2: v = ((const uint8_t *)data)[i]; break;
        case 3: v = ((const int16_t *)data)[i]; break;
        default: v = ((const uint16_t *)data)[i]; break;
        }
        printf("%.9g%c", v, i + 1 < count ? ' ' : '\n');
    }
}

int main(int argc, char **argv)
{
    static char reply[64];
    int n;
    if (argc != 3) return 2;
    n = jointnas_reply(argv[2], reply, atoi(argv[1]));
    printf("%s\n", reply);
    return n < 0;
}
