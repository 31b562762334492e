#include "lk_shim.h"

bool lk_abort_callback(void * data) {
    if (data == NULL) {
        return false;
    }
    return __atomic_load_n((int *) data, __ATOMIC_RELAXED) != 0;
}

int lk_shim_version(void) {
    return 1;
}
