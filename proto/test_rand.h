/*
 * test_rand: the deterministic random values the proto tests draw for
 * their differential checks (the hand-written encoders against
 * protobuf-c): splitmix64, and integers that favour the ends of each
 * varint width.  Header-only; each test program has its own state.
 */
#ifndef SCHAKEL_TEST_RAND_H
#define SCHAKEL_TEST_RAND_H

#include <stdint.h>

static uint64_t trand_state;

static void
trand_seed(uint64_t seed)
{
	trand_state = seed;
}

/* splitmix64 */
static uint64_t
trand_next(void)
{
	uint64_t z = (trand_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t
trand_below(uint64_t n)
{
	return trand_next() % n;
}

/* A varint worth trying: zero, one, the maximum, the ends of each byte
 * count, or random of a random width. */
static uint64_t
trand_u64(void)
{
	switch (trand_below(8)) {
	case 0:
		return 0;
	case 1:
		return UINT64_MAX;
	case 2:
		return 1;
	case 3: {
		uint64_t edge = 1ull << (7 * (1 + trand_below(9)));

		return edge - 1 + trand_below(2);
	}
	default:
		return trand_next() >> trand_below(64);
	}
}

static uint32_t
trand_u32(void)
{
	if (trand_below(8) == 0)
		return UINT32_MAX;
	return (uint32_t)trand_u64();
}

#endif
