/* The C ABI as a C program sees it: the header compiles, the library links,
 * and floorbell_version() answers the crate's version. Run under valgrind by
 * test.sh, which fails on any invalid access or leak. */
#include <stdio.h>
#include <string.h>

#include "floorbell.h"

int main(void) {
    const char *v = floorbell_version();
    if (v == NULL) {
        fprintf(stderr, "floorbell_version returned NULL\n");
        return 1;
    }
    /* MAJOR.MINOR.PATCH: three numbers, two dots. */
    int dots = 0;
    for (const char *p = v; *p; p++) {
        if (*p == '.') {
            dots++;
        } else if (*p < '0' || *p > '9') {
            fprintf(stderr, "unexpected character in version %s\n", v);
            return 1;
        }
    }
    if (dots != 2 || strcmp(v, EXPECTED_VERSION) != 0) {
        fprintf(stderr, "version %s, expected %s\n", v, EXPECTED_VERSION);
        return 1;
    }
    printf("1 passed, 0 failed\n");
    return 0;
}
