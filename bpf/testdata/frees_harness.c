/* Runs free_class (bpf/headers/drops.h) on the host. stdin: the number of normal frees,
 * then each as "lo hi reason need class", then the reason bits (collector/frees.go,
 * normalReasonBits) as "high word0 word1", then cases as "is_kfree reason location len
 * delivered", all decimal; prints each case's enum free_class value. */
#include "host.h"

#include "drops.h"

int main(void)
{
	static struct kernel_cfg cfg;
	if (scanf("%u", &cfg.n_normal_frees) != 1 || cfg.n_normal_frees > NORMAL_FREES_MAX)
		return 1;
	for (__u32 i = 0; i < cfg.n_normal_frees; i++) {
		struct normal_free *f = &cfg.normal_frees[i];
		unsigned int need, class;
		if (scanf("%llu %llu %u %u %u", &f->lo, &f->hi, &f->reason, &need, &class) != 5)
			return 1;
		f->need = need;
		f->class = class;
	}
	if (scanf("%u %llu %llu", &cfg.normal_reasons_high, &cfg.normal_reasons[0], &cfg.normal_reasons[1]) != 3)
		return 1;
	unsigned long long location;
	unsigned int is_kfree, reason, len, delivered;
	while (scanf("%u %u %llu %u %u", &is_kfree, &reason, &location, &len, &delivered) == 5)
		printf("%u\n", free_class(&cfg, is_kfree, reason, location, len, delivered));
	return 0;
}
