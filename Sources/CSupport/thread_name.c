#define _GNU_SOURCE
#include <pthread.h>
#include "anduin_support.h"

int anduin_name_this_thread(const char *name) {
#if defined(__linux__)
    return pthread_setname_np(pthread_self(), name);
#else
    (void)name;
    return 0;
#endif
}
