/*
 * libdsm error codes: what every layer of the library returns, and what
 * include/dsm.h hands to programs. Installed with dsm.h, which includes it;
 * programs include dsm.h. The library's lower layers (net/, pager/, common/)
 * include only this header, not the public API.
 */
#ifndef DSM_DSM_ERRORS_H
#define DSM_DSM_ERRORS_H

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define DSM_EXPORT __attribute__((visibility("default")))
#else
#define DSM_EXPORT
#endif

/* Error codes. Always negative; 0 is success. */
enum dsm_error {
	DSM_OK = 0,
	DSM_EINVAL = -1,      /* invalid argument */
	DSM_ENOMEM = -2,      /* out of memory */
	DSM_EPEERDEAD = -3,   /* the peer this operation needed has failed */
	DSM_ETIMEDOUT = -4,   /* the operation did not complete in time */
	DSM_EAGAIN = -5,      /* resource temporarily unavailable, try again */
	DSM_EADDRINUSE = -6,  /* local address (host:port) already in use */
	DSM_EADDR = -7,       /* bad or unreachable peer address */
	DSM_EPROVIDER = -8,   /* network provider unknown or unusable */
	DSM_ECONFIG = -9,     /* malformed DSM_* environment variable */
	DSM_EMSGSIZE = -10,   /* message larger than the configured maximum */
	DSM_EPROTO = -11,     /* malformed message */
	DSM_ECLOSED = -12,    /* the library is shutting down or not initialised */
	DSM_ESYS = -13,       /* unexpected system or provider error */
	DSM_ENOTSUP = -14,    /* not supported here */
	DSM_ENOENT = -15,     /* no such object (e.g. no handler for an RPC) */
	DSM_EBUSY = -16,      /* resource busy */
	DSM_EOWNERDEAD = -17, /* lock granted, but its previous holder died holding it */
	DSM_EPERM = -18,      /* not allowed to this caller (e.g. unlock of a lock another thread holds) */
	DSM_EDEADLK = -19,    /* would wait forever (e.g. a thread locking a lock it holds) */
	DSM_ERRNO_MIN = -20   /* one below the last code */
};

/* Exit status of a process ended because a load or store of shared memory
 * could not be served (the page's home node is dead): see
 * dsm_set_fault_handler. */
#define DSM_EXIT_FAULT 86

/* Text for an error code; never NULL. */
DSM_EXPORT const char *dsm_strerror(int err);

#ifdef __cplusplus
}
#endif

#endif /* DSM_DSM_ERRORS_H */
