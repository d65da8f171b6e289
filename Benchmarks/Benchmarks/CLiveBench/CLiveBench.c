#include "CLiveBench.h"

#include <sys/ioctl.h>

int clb_pending_bytes(int fd) {
    int n = 0;
    if (ioctl(fd, FIONREAD, &n) != 0) return -1;
    return n;
}
