/*
 * libdsm — user-space distributed shared memory.
 *
 * This is the only header a program includes. Every function returns 0 (or
 * a count) on success and a negative DSM_E* code on failure; dsm_strerror()
 * turns a code into text. The library never ends the process on a condition
 * a user or the network can cause.
 */
#ifndef DSM_DSM_H
#define DSM_DSM_H

#include <stddef.h>
#include <stdint.h>

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
	DSM_ERRNO_MIN = -17   /* one below the last code */
};

/* Text for an error code; never NULL. */
DSM_EXPORT const char *dsm_strerror(int err);

#ifdef __cplusplus
}
#endif

#endif /* DSM_DSM_H */
