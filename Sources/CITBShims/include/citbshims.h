// What Glibc does not show Swift: variadic ioctls, pseudo-terminal set-up, peer credentials.
//
// No _GNU_SOURCE here: defining it in a header shared with Swift changes other modules' view of
// the C library (it breaks their imports of fd_set). It lives in citbshims.c only.
#ifndef CITBSHIMS_H
#define CITBSHIMS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Opens a new pseudo-terminal master (O_RDWR | O_NOCTTY | O_CLOEXEC), grants and unlocks its
/// slave. Returns the master descriptor, or -1 with errno set.
int itb_pty_open_master(void);

/// Writes the slave device path of `master` into `buffer` (NUL-terminated). 0, or -1 with errno.
int itb_pty_slave_path(int master, char *buffer, size_t length);

/// TIOCEXCL: further open(2)s of this terminal fail with EBUSY (except for root). 0 or -1.
int itb_tty_set_exclusive(int fd);

/// TIOCNXCL: ends exclusive mode (set before closing, so the terminal is free for the next
/// opener even while the tty itself lives on, as a pty slave does while its master is open).
int itb_tty_clear_exclusive(int fd);

/// TIOCGEXCL: stores 1 in `*exclusive` when the terminal is in exclusive mode. 0 or -1.
int itb_tty_get_exclusive(int fd, int *exclusive);

/// FIONREAD: bytes waiting to be read. 0 or -1.
int itb_fd_bytes_readable(int fd, int *count);

/// eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC): a descriptor another thread can signal to wake a
/// poll(). Returns the descriptor or -1 with errno.
int itb_eventfd_create(void);

/// Names the calling thread (at most 15 bytes are kept), for `top -H` and core dumps.
void itb_thread_set_name(const char *name);

/// The credentials of the peer of a connected Unix socket (SO_PEERCRED).
typedef struct {
    int32_t pid;
    uint32_t uid;
    uint32_t gid;
} itb_peer_credentials;

/// Reads SO_PEERCRED of a connected Unix-domain socket. 0, or -1 with errno.
int itb_peer_credentials_get(int fd, itb_peer_credentials *credentials);

/// Gives the C heap's free memory back to the kernel (glibc's malloc_trim(0); a no-op
/// elsewhere). Returns 1 when memory was released.
int itb_release_free_memory(void);

#ifdef __cplusplus
}
#endif

#endif
