// Weight layouts repacked at load for the decode kernels.
//
// A Q4_0 or Q8_0 matrix row is a run of blocks (fp16 scale, then quants); a
// decode gemv over it gathers each block's scale and quants into vector
// order per row and reduces every row on its own. The X16 layouts store the
// same bytes with 16 rows interleaved: one sequential stream feeds 16 rows,
// one vpdpbusd multiplies 4 quants of each of the 16 rows (one row per
// 32-bit lane) with 4 broadcast activation quants, and the 16 scales convert
// with one instruction.
//
// Layout (nb = K / 32 blocks per row, B = the plain block's bytes: 18 for
// Q4_0, 34 for Q8_0): group g of rows 16g..16g+15 at g * nb * 16 * B bytes,
// so row r0 (a multiple of 16) starts where it did, at r0 * row_bytes(K).
// Block b of a group at b * 16 * B bytes:
//   [0, 32)  the 16 rows' fp16 scales, row i at 2i
//   then for j = 0 .. B / 4 - 1: 64 bytes, the 16 rows' quant bytes
//            4j..4j+3 (row i at 4i).
// Q4_0_X16: quant bytes as in the file (low nibbles are elements 4j..4j+3,
// high nibbles 16+4j..16+4j+3; j < 4). Q8_0_X16: elements 4j..4j+3 (j < 8)
// stored + 128 (xor 0x80), unsigned for vpdpbusd.
//
// Q6_K_X16 (super-blocks of 256 elements, 210 bytes per row): per super-block
// of a group, 3360 bytes: [0, 32) the 16 rows' fp16 d; [32, 288) the scales,
// scale s of row i at 32 + 16s + i; then per 32 elements E (E = 0..7) 384
// bytes at 288 + 384E: four 64-byte vectors L_k (row i's 4 bytes at 4i: low
// nibbles the low 4 bits of elements 32E+4k.., high nibbles of 32E+16+4k..)
// and two H_m (the top 2 bits of elements 32E+16m+4u.. at bits 2u, u = 0..3).
//
// Q4_K_X16 (256 elements, 144 bytes per row): per super-block of a group,
// 2304 bytes: [0, 32) d and [32, 64) dmin of the 16 rows (fp16); [64, 256)
// the 6-bit scales and mins, byte k of row i at 64 + 16k + i: bytes 0..7 the
// scale of sub-block k in bits 0..5 and the top 2 bits of its min in bits
// 6..7, bytes 8..11 the mins' low 4 bits (sub-block 2(k-8) low nibble,
// 2(k-8)+1 high); then per pair c of 32-element sub-blocks 512 bytes at
// 256 + 512c: eight 64-byte vectors, row i's file bytes qs[32c+4k..+3] at
// 4i (low nibbles sub-block 2c, high nibbles 2c+1).
//
// Q5_0_X16 (22 bytes per row block): as Q4_0_X16 with the 5th bits between
// the scales and the quants: block b of a group at b * 352 bytes, [0, 32)
// the scales, [32, 96) the 16 rows' high bits (row i at 32 + 4i, byte c bit
// u = the 5th bit of element 4u + c: the file's 32-bit qh transposed so that
// one shift brings the bits of quant vector u to bit 4 of every byte), then
// the quants as in Q4_0_X16.
//
// Q5_K_X16 (256 elements, 176 bytes per row): per super-block of a group,
// 2816 bytes: [0, 256) as in Q4_K_X16; then per pair c of sub-blocks 640
// bytes at 256 + 640c: two 64-byte vectors of 5th bits, G_0 for sub-block
// 2c and G_1 for 2c + 1 (row i's byte 4i + e bit k = the 5th bit of element
// 4k + e of that sub-block: one shift brings quant vector k's bits to bit 4),
// then the pair's 512 bytes of quants as in Q4_K_X16. The bits sit next to
// the quants they complete: the kernel reads each byte once, in order.
//
// Trade-off: the packed copy is anonymous memory (the file's pages are
// dropped from the process's resident set once copied), so processes that
// map the same file no longer share those pages.
#pragma once

#include <cstddef>
#include <cstdint>

#include "tensor/kernels.h"
#include "tensor/types.h"

namespace lmhost {

// The packed layout for weights of type t that the kernels table k can use
// (gemv_packed set), or t itself when there is none.
DType packed_type(DType t, const Kernels& k);
// Whether a matrix of `rows` rows of K elements of type t can be packed.
bool packable(DType t, int64_t K, int64_t rows, const Kernels& k);

// rows (a multiple of kPackRows) rows of K elements of type t (Q4_0, Q5_0,
// Q8_0, Q4_K, Q5_K or Q6_K), row r at src + r * src_stride, into dst (rows * row_bytes(t, K)
// bytes) in its X16 layout.
void pack_x16(DType t, const void* src, size_t src_stride, int64_t K, int64_t rows, void* dst);
// The 16 rows of one packed group (type packed) back as plain rows, row i at
// dst + i * row_bytes(K).
void unpack_x16(DType packed, const void* group, int64_t K, void* dst);

// The file type a packed type was made from (Q4_0_X16 -> Q4_0, ...).
DType plain_type(DType packed);
// Row r of a packed matrix of rows of K elements (data from row 0) in the
// plain type's layout (row_bytes(K) bytes at dst): embedding lookups in a
// tied output matrix that was packed.
void packed_row(DType packed, const void* data, int64_t K, int64_t r, void* dst);

// Prepares one Q8_0 activation row of n elements for gemv_packed: d and sum
// get n / 32 entries each (PackedAct; Q8_K activations need nothing).
void prepare_packed_act(const void* q8_row, int64_t n, float* d, int32_t* sum);

}  // namespace lmhost
