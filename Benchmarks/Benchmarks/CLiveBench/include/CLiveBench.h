// What Glibc does not show Swift and itb-live-bench needs: epoll, for one thread to follow
// 1,000 SSE subscribers on non-blocking sockets (the Glibc module has no <sys/epoll.h>), and
// FIONREAD through ioctl (variadic in C, so not callable from Swift as declared).
#ifndef C_LIVE_BENCH_H
#define C_LIVE_BENCH_H

#include <sys/epoll.h>

/// Bytes waiting in a socket's receive queue (read by nobody yet), or -1 with errno set.
int clb_pending_bytes(int fd);

#endif
