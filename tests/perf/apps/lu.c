/*
 * bench-apps kernel 'lu' (app.h): not written yet.
 */
#include <stdio.h>

#include "app.h"

static int run(const struct app_ops *ops, long size, struct app_result *out)
{
	(void)ops;
	(void)size;
	(void)out;
	fprintf(stderr, "app lu: not written yet\n");
	return -1;
}

const struct app_kernel app_lu = {
	.name = "lu",
	.what = "(not written yet)",
	.default_size = 1,
	.run = run,
};
