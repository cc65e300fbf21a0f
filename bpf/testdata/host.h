/* What the probes' headers need from the BPF environment, for the host harnesses. */
#ifndef __PKTSPAN_TESTDATA_HOST_H
#define __PKTSPAN_TESTDATA_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <linux/types.h>

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

/* The kernel's bpf_loop, for the host: calls fn until it returns non-zero. */
static long bpf_loop(__u32 nr_loops, void *fn, void *ctx, __u64 flags)
{
	(void)flags;
	for (__u32 i = 0; i < nr_loops; i++)
		if (((long (*)(__u32, void *))fn)(i, ctx))
			return i + 1;
	return nr_loops;
}

#endif
