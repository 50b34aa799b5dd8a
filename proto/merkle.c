/*
 * merkle: Merkle trees, inclusion proofs and the one signature over a
 * batch's root.  It knows nothing of envelopes or receipts: callers hand
 * it leaf hashes.  Every length it reads from a peer is checked here
 * before it is used as an index.
 */
#include "merkle.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define S_MAX_LEVELS (MERKLE_MAX_PROOF + 1)

struct merkle_tree {
	size_t count;
	size_t nlevels;
	size_t off[S_MAX_LEVELS]; /* index of each level's first node */
	size_t size[S_MAX_LEVELS];
	uint8_t (*nodes)[MERKLE_HASH_LEN];
};

static const char *
s_label(enum merkle_domain d)
{
	return d == MERKLE_DOMAIN_RECEIPT ? "schakel.v1 receipt"
					  : "schakel.v1 batch";
}

void
merkle_leaf_hash(const uint8_t *data, size_t len, uint8_t out[MERKLE_HASH_LEN])
{
	crypto_generichash_state st;
	const uint8_t prefix = 0x00;

	crypto_generichash_init(&st, NULL, 0, MERKLE_HASH_LEN);
	crypto_generichash_update(&st, &prefix, 1);
	crypto_generichash_update(&st, data, len);
	crypto_generichash_final(&st, out, MERKLE_HASH_LEN);
}

void
merkle_node_hash(const uint8_t left[MERKLE_HASH_LEN],
    const uint8_t right[MERKLE_HASH_LEN], uint8_t out[MERKLE_HASH_LEN])
{
	uint8_t in[1 + 2 * MERKLE_HASH_LEN];

	in[0] = 0x01;
	memcpy(in + 1, left, MERKLE_HASH_LEN);
	memcpy(in + 1 + MERKLE_HASH_LEN, right, MERKLE_HASH_LEN);
	crypto_generichash(out, MERKLE_HASH_LEN, in, sizeof in, NULL, 0);
}

size_t
merkle_proof_len(uint32_t index, uint32_t count)
{
	size_t n = 0;

	if (count == 0 || count > MERKLE_MAX_LEAVES || index >= count)
		return (size_t)-1;
	/* A node with no right sibling (last of an odd level) is carried up
	 * unchanged and contributes no proof hash. */
	for (uint32_t size = count, i = index; size > 1;
	     size = (size + 1) / 2, i /= 2)
		if ((i ^ 1u) < size)
			n++;
	return n;
}

struct merkle_tree *
merkle_tree_new(const uint8_t (*leaves)[MERKLE_HASH_LEN], size_t count)
{
	struct merkle_tree *t;
	size_t total = 0;

	if (count == 0 || count > MERKLE_MAX_LEAVES)
		return NULL;
	t = calloc(1, sizeof *t);
	if (t == NULL)
		return NULL;
	for (size_t size = count;; size = (size + 1) / 2) {
		assert(t->nlevels < S_MAX_LEVELS);
		t->off[t->nlevels] = total;
		t->size[t->nlevels] = size;
		t->nlevels++;
		total += size;
		if (size == 1)
			break;
	}
	t->nodes = malloc(total * MERKLE_HASH_LEN);
	if (t->nodes == NULL) {
		free(t);
		return NULL;
	}
	t->count = count;
	memcpy(t->nodes, leaves, count * MERKLE_HASH_LEN);
	for (size_t l = 1; l < t->nlevels; l++) {
		uint8_t(*below)[MERKLE_HASH_LEN] = t->nodes + t->off[l - 1];
		uint8_t(*here)[MERKLE_HASH_LEN] = t->nodes + t->off[l];
		size_t bsize = t->size[l - 1];

		for (size_t j = 0; j + 1 < bsize; j += 2)
			merkle_node_hash(below[j], below[j + 1], here[j / 2]);
		if (bsize % 2 == 1)
			memcpy(
			    here[bsize / 2], below[bsize - 1], MERKLE_HASH_LEN);
	}
	return t;
}

void
merkle_tree_destroy(struct merkle_tree **t)
{
	if (t == NULL || *t == NULL)
		return;
	free((*t)->nodes);
	free(*t);
	*t = NULL;
}

const uint8_t *
merkle_tree_root(const struct merkle_tree *t)
{
	return t->nodes[t->off[t->nlevels - 1]];
}

int
merkle_tree_proof(
    const struct merkle_tree *t, uint32_t index, struct merkle_sig *s)
{
	size_t i = index, n = 0;

	if (index >= t->count)
		return SCHAKEL_E_BAD_ARGUMENT;
	for (size_t l = 0; l + 1 < t->nlevels; l++, i /= 2) {
		if ((i ^ 1u) < t->size[l]) {
			assert(n < MERKLE_MAX_PROOF);
			memcpy(s->proof[n++], t->nodes[t->off[l] + (i ^ 1u)],
			    MERKLE_HASH_LEN);
		}
	}
	memcpy(s->root, merkle_tree_root(t), MERKLE_HASH_LEN);
	s->leaf_index = index;
	s->leaf_count = (uint32_t)t->count;
	s->proof_len = n;
	return SCHAKEL_OK;
}

/* The path of the last leaf proven into `root`, by level: the node a
 * step started from (its index fn) and the sibling it was hashed with.
 * Each node in it hashes up to the root with the siblings above it, so a
 * leaf of the same tree whose walk reaches one of them, with the same
 * siblings above, is in the tree too: 32-byte comparisons instead of
 * hashes for the rest of its proof.  Consecutive leaves of a batch share
 * all but one or two levels. */
struct s_memo {
	bool valid;
	uint32_t count;
	uint8_t root[MERKLE_HASH_LEN];
	uint32_t has; /* bit l: level l is known */
	uint32_t fn[S_MAX_LEVELS];
	uint8_t node[S_MAX_LEVELS][MERKLE_HASH_LEN];
	uint8_t sib[S_MAX_LEVELS][MERKLE_HASH_LEN];
};

/* Whether node r at (level, fn) is in the memo and the rest of the proof
 * from step k on is the memo's path up (RFC 9162 2.1.3.2's steps, without
 * hashing). */
static bool
s_memo_rest(const struct s_memo *m, const struct merkle_sig *s, size_t k,
    uint32_t fn, uint32_t sn, unsigned level, const uint8_t *r)
{
	/* Its position (fn) is compared with the siblings below. */
	if (!(m->has >> level & 1u) ||
	    memcmp(m->node[level], r, MERKLE_HASH_LEN) != 0)
		return false;
	for (; k < s->proof_len; k++) {
		if (sn == 0 || !(m->has >> level & 1u) || m->fn[level] != fn ||
		    memcmp(m->sib[level], s->proof[k], MERKLE_HASH_LEN) != 0)
			return false;
		if ((fn & 1u) || fn == sn) {
			while (!(fn & 1u) && fn != 0) {
				fn >>= 1;
				sn >>= 1;
				level++;
			}
		}
		fn >>= 1;
		sn >>= 1;
		level++;
	}
	return sn == 0;
}

/* merkle_proof_check, consulting and then updating memo `m` when it is
 * not NULL. */
static int
s_proof_walk(const uint8_t leaf[MERKLE_HASH_LEN], const struct merkle_sig *s,
    struct s_memo *m)
{
	uint8_t r[MERKLE_HASH_LEN], nodes[MERKLE_MAX_PROOF][MERKLE_HASH_LEN];
	uint32_t fn = s->leaf_index, sn, fns[MERKLE_MAX_PROOF];
	unsigned level = 0, levels[MERKLE_MAX_PROOF];
	bool same = m != NULL && m->valid && m->count == s->leaf_count &&
	    memcmp(m->root, s->root, MERKLE_HASH_LEN) == 0;
	bool known = false;
	size_t k;

	if (merkle_proof_len(s->leaf_index, s->leaf_count) != s->proof_len)
		return SCHAKEL_E_BAD_PROOF;
	sn = s->leaf_count - 1;
	memcpy(r, leaf, MERKLE_HASH_LEN);
	for (k = 0; k < s->proof_len; k++) {
		if (sn == 0)
			return SCHAKEL_E_BAD_PROOF;
		if (same && s_memo_rest(m, s, k, fn, sn, level, r)) {
			known = true;
			break;
		}
		levels[k] = level;
		fns[k] = fn;
		memcpy(nodes[k], r, MERKLE_HASH_LEN);
		if ((fn & 1u) || fn == sn) {
			merkle_node_hash(s->proof[k], r, r);
			while (!(fn & 1u) && fn != 0) {
				fn >>= 1;
				sn >>= 1;
				level++;
			}
		} else {
			merkle_node_hash(r, s->proof[k], r);
		}
		fn >>= 1;
		sn >>= 1;
		level++;
	}
	/* Roots are public: a plain comparison is enough. */
	if (!known && (sn != 0 || memcmp(r, s->root, MERKLE_HASH_LEN) != 0))
		return SCHAKEL_E_BAD_PROOF;
	if (m == NULL)
		return SCHAKEL_OK;
	if (!same) {
		m->valid = true;
		m->count = s->leaf_count;
		memcpy(m->root, s->root, MERKLE_HASH_LEN);
		m->has = 0;
	}
	for (size_t j = 0; j < k; j++) {
		m->has |= 1u << levels[j];
		m->fn[levels[j]] = fns[j];
		memcpy(m->node[levels[j]], nodes[j], MERKLE_HASH_LEN);
		memcpy(m->sib[levels[j]], s->proof[j], MERKLE_HASH_LEN);
	}
	return SCHAKEL_OK;
}

int
merkle_proof_check(
    const uint8_t leaf[MERKLE_HASH_LEN], const struct merkle_sig *s)
{
	return s_proof_walk(leaf, s, NULL);
}

size_t
merkle_sig_message(enum merkle_domain d, uint32_t leaf_count,
    const uint8_t root[MERKLE_HASH_LEN], uint8_t out[MERKLE_SIGMSG_MAX])
{
	const char *label = s_label(d);
	size_t n = strlen(label);

	assert(n + 1 + 4 + MERKLE_HASH_LEN <= MERKLE_SIGMSG_MAX);
	memcpy(out, label, n);
	out[n++] = 0x00;
	out[n++] = (uint8_t)(leaf_count >> 24);
	out[n++] = (uint8_t)(leaf_count >> 16);
	out[n++] = (uint8_t)(leaf_count >> 8);
	out[n++] = (uint8_t)leaf_count;
	memcpy(out + n, root, MERKLE_HASH_LEN);
	return n + MERKLE_HASH_LEN;
}

int
merkle_sign(
    enum merkle_domain d, const uint8_t sk[MERKLE_SK_LEN], struct merkle_sig *s)
{
	uint8_t msg[MERKLE_SIGMSG_MAX];
	size_t n = merkle_sig_message(d, s->leaf_count, s->root, msg);

	if (crypto_sign_detached(s->sig, NULL, msg, n, sk) != 0)
		return SCHAKEL_E_INTERNAL;
	return SCHAKEL_OK;
}

/* One verified tuple, stored whole: a hit is an exact match of every
 * input the verdict depends on, so the cache can never say yes to
 * something that was not verified. */
struct s_slot {
	bool used;
	uint8_t domain;
	uint32_t count;
	uint8_t pk[MERKLE_PK_LEN];
	uint8_t root[MERKLE_HASH_LEN];
	uint8_t sig[MERKLE_SIG_LEN];
};

struct merkle_cache {
	size_t mask;
	uint8_t key[crypto_shorthash_KEYBYTES];
	uint64_t hits, misses;
	struct s_slot *slots;
	struct s_memo memo;
};

int
merkle_proof_check_cached(const uint8_t leaf[MERKLE_HASH_LEN],
    const struct merkle_sig *s, struct merkle_cache *cache)
{
	return s_proof_walk(leaf, s, cache != NULL ? &cache->memo : NULL);
}

struct merkle_cache *
merkle_cache_new(size_t slots)
{
	struct merkle_cache *c;
	size_t n = 1;

	while (n < slots && n < ((size_t)1 << 24))
		n <<= 1;
	c = calloc(1, sizeof *c);
	if (c == NULL)
		return NULL;
	c->slots = calloc(n, sizeof *c->slots);
	if (c->slots == NULL) {
		free(c);
		return NULL;
	}
	c->mask = n - 1;
	/* A secret per-cache SipHash key makes slot choice unpredictable to
	 * peers, so nobody can grind roots to evict another party's batch. */
	randombytes_buf(c->key, sizeof c->key);
	return c;
}

void
merkle_cache_destroy(struct merkle_cache **c)
{
	if (c == NULL || *c == NULL)
		return;
	free((*c)->slots);
	sodium_memzero(*c, sizeof **c);
	free(*c);
	*c = NULL;
}

void
merkle_cache_stats(
    const struct merkle_cache *c, uint64_t *hits, uint64_t *misses)
{
	*hits = c->hits;
	*misses = c->misses;
}

static bool
s_slot_match(const struct s_slot *sl, enum merkle_domain d,
    const uint8_t pk[MERKLE_PK_LEN], const struct merkle_sig *s)
{
	return sl->used && sl->domain == (uint8_t)d &&
	    sl->count == s->leaf_count &&
	    memcmp(sl->root, s->root, MERKLE_HASH_LEN) == 0 &&
	    memcmp(sl->pk, pk, MERKLE_PK_LEN) == 0 &&
	    memcmp(sl->sig, s->sig, MERKLE_SIG_LEN) == 0;
}

int
merkle_sig_check(enum merkle_domain d, const uint8_t pk[MERKLE_PK_LEN],
    const struct merkle_sig *s, struct merkle_cache *cache)
{
	uint8_t msg[MERKLE_SIGMSG_MAX], h[crypto_shorthash_BYTES];
	struct s_slot *slot = NULL;
	uint64_t idx;
	size_t n;

	if (cache != NULL) {
		crypto_shorthash(h, s->root, MERKLE_HASH_LEN, cache->key);
		memcpy(&idx, h, sizeof idx);
		slot = &cache->slots[idx & cache->mask];
		if (s_slot_match(slot, d, pk, s)) {
			cache->hits++;
			return SCHAKEL_OK;
		}
		cache->misses++;
	}
	n = merkle_sig_message(d, s->leaf_count, s->root, msg);
	if (crypto_sign_verify_detached(s->sig, msg, n, pk) != 0)
		return SCHAKEL_E_BAD_SIGNATURE;
	if (slot != NULL) {
		slot->used = true;
		slot->domain = (uint8_t)d;
		slot->count = s->leaf_count;
		memcpy(slot->pk, pk, MERKLE_PK_LEN);
		memcpy(slot->root, s->root, MERKLE_HASH_LEN);
		memcpy(slot->sig, s->sig, MERKLE_SIG_LEN);
	}
	return SCHAKEL_OK;
}
