// Generated from tensor-core's op enums (crates/tensor-core/src/backend.rs) by
// `cargo xtask ptx`; checked by `cargo xtask ptx --check`. Do not edit.
#pragma once

// UnaryOp
enum {
    U_NEG = 0,
    U_ABS = 1,
    U_EXP = 2,
    U_LOG = 3,
    U_LOG1P = 4,
    U_EXPM1 = 5,
    U_SQRT = 6,
    U_RSQRT = 7,
    U_SIN = 8,
    U_COS = 9,
    U_TAN = 10,
    U_TANH = 11,
    U_SIGMOID = 12,
    U_RELU = 13,
    U_LEAKY_RELU = 14,
    U_ELU = 15,
    U_GELU = 16,
    U_GELU_TANH = 17,
    U_SILU = 18,
    U_LOG_SIGMOID = 19,
    U_MISH = 20,
    U_SOFTPLUS = 21,
    U_SIGN = 22,
    U_FLOOR = 23,
    U_CEIL = 24,
    U_ROUND = 25,
    U_TRUNC = 26,
    U_RECIP = 27,
    U_SQUARE = 28,
    U_ERF = 29,
    U_POW_SCALAR = 30,
    U_CLAMP = 31,
    U_ADD_SCALAR = 32,
    U_MUL_SCALAR = 33,
    U_IS_NAN = 34,
    U_IS_INF = 35,
    U_LOGICAL_NOT = 36,
};

// BinaryOp
enum {
    B_ADD = 0,
    B_SUB = 1,
    B_MUL = 2,
    B_DIV = 3,
    B_POW = 4,
    B_MAXIMUM = 5,
    B_MINIMUM = 6,
    B_REMAINDER = 7,
    B_ATAN2 = 8,
    B_EQ = 9,
    B_NE = 10,
    B_LT = 11,
    B_LE = 12,
    B_GT = 13,
    B_GE = 14,
    B_LOGICAL_AND = 15,
    B_LOGICAL_OR = 16,
    B_LOGICAL_XOR = 17,
};

// ReduceOp
enum {
    R_SUM = 0,
    R_PROD = 1,
    R_MAX = 2,
    R_MIN = 3,
    R_ARG_MAX = 4,
    R_ARG_MIN = 5,
    R_ALL = 6,
    R_ANY = 7,
};

// ScanOp
enum {
    S_CUM_SUM = 0,
    S_CUM_PROD = 1,
};
