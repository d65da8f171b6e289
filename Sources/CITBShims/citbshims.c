#define _GNU_SOURCE
#include "citbshims.h"

#include <errno.h>
#include <fcntl.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <stdlib.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

int itb_pty_open_master(void) {
    int fd = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) return -1;
    if (grantpt(fd) != 0 || unlockpt(fd) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

int itb_pty_slave_path(int master, char *buffer, size_t length) {
    int rc = ptsname_r(master, buffer, length);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    return 0;
}

int itb_tty_set_exclusive(int fd) { return ioctl(fd, TIOCEXCL); }

int itb_tty_clear_exclusive(int fd) { return ioctl(fd, TIOCNXCL); }

int itb_tty_get_exclusive(int fd, int *exclusive) { return ioctl(fd, TIOCGEXCL, exclusive); }

int itb_fd_bytes_readable(int fd, int *count) { return ioctl(fd, FIONREAD, count); }

int itb_peer_credentials_get(int fd, itb_peer_credentials *credentials) {
    struct ucred cred;
    socklen_t length = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &length) != 0) return -1;
    credentials->pid = cred.pid;
    credentials->uid = cred.uid;
    credentials->gid = cred.gid;
    return 0;
}

int itb_eventfd_create(void) { return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }

void itb_thread_set_name(const char *name) {
    char shortened[16];
    size_t i = 0;
    for (; i < 15 && name[i]; i++) shortened[i] = name[i];
    shortened[i] = 0;
    pthread_setname_np(pthread_self(), shortened);
}

int itb_release_free_memory(void) {
#if defined(__GLIBC__)
    return malloc_trim(0);
#else
    return 0;
#endif
}
