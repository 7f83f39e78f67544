/*
 * RFC 6298 estimator: SRTT and RTTVAR with gains 1/8 and 1/4,
 * RTO = SRTT + max(G, 4 * RTTVAR) clamped to [min, max]. G, the clock
 * granularity, is taken as 1 us (CLOCK_MONOTONIC).
 */
#include "rtt.h"

static int64_t clamp(const struct dsm__rtt *r, int64_t v)
{
	if (v < r->min_us)
		return r->min_us;
	if (v > r->max_us)
		return r->max_us;
	return v;
}

void dsm__rtt_init(struct dsm__rtt *r, int64_t init_us, int64_t min_us, int64_t max_us)
{
	r->srtt_us = 0;
	r->rttvar_us = 0;
	r->min_us = min_us;
	r->max_us = max_us < min_us ? min_us : max_us;
	r->rto_us = clamp(r, init_us);
	r->backoff = 0;
	r->have_sample = false;
}

void dsm__rtt_sample(struct dsm__rtt *r, int64_t sample_us)
{
	int64_t var, err;

	if (sample_us <= 0)
		sample_us = 1;
	if (!r->have_sample) {
		r->srtt_us = sample_us;
		r->rttvar_us = sample_us / 2;
		r->have_sample = true;
	} else {
		err = r->srtt_us - sample_us;
		if (err < 0)
			err = -err;
		r->rttvar_us = (3 * r->rttvar_us + err) / 4;
		r->srtt_us = (7 * r->srtt_us + sample_us) / 8;
	}
	var = 4 * r->rttvar_us;
	r->rto_us = clamp(r, r->srtt_us + (var > 1 ? var : 1));
	r->backoff = 0;
}

int64_t dsm__rtt_timeout(const struct dsm__rtt *r)
{
	int64_t t = r->rto_us;

	for (unsigned i = 0; i < r->backoff && t < r->max_us; i++)
		t *= 2;
	return t > r->max_us ? r->max_us : t;
}

void dsm__rtt_backoff(struct dsm__rtt *r)
{
	if (r->backoff < 30)
		r->backoff++;
}
