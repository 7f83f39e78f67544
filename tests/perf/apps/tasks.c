/*
 * bench-apps kernel 'tasks' (app.h): not written yet.
 */
#include <stdio.h>

#include "app.h"

static int run(const struct app_ops *ops, long size, struct app_result *out)
{
	(void)ops;
	(void)size;
	(void)out;
	fprintf(stderr, "app tasks: not written yet\n");
	return -1;
}

const struct app_kernel app_tasks = {
	.name = "tasks",
	.what = "(not written yet)",
	.default_size = 1,
	.run = run,
};
