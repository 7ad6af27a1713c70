/* Test driver of jointnas_reply: one reply line per query argument. Usage: reply <max_len> <query>... */
#include <stdio.h>
#include <stdlib.h>

#include "jointnas_model.h"

int main(int argc, char **argv)
{
    static char reply[256];
    int i, max_len;
    if (argc < 2) return 2;
    max_len = atoi(argv[1]);
    if (max_len < 1 || max_len > (int)sizeof reply) return 3;
    for (i = 2; i < argc; ++i) {
        const int n = jointnas_reply(argv[i], reply, max_len);
        printf("%d|%s\n", n, reply);
    }
    return 0;
}
