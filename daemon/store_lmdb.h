/*
 * store_lmdb: what the LMDB backend shows beyond its ops table, for its
 * tests.
 */
#ifndef SCHAKEL_STORE_LMDB_H
#define SCHAKEL_STORE_LMDB_H

struct MDB_val;

/* The key and duplicate order of every table: LMDB's default order
 * (bytes compared as unsigned, the shorter first when one is a prefix of
 * the other), computed eight bytes at a time. */
int store_lmdb_cmp(const struct MDB_val *a, const struct MDB_val *b);

#endif
