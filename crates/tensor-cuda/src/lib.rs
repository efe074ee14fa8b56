//! The CUDA backend for tensor-core: cuBLAS and committed PTX kernels, no nvcc needed to build.
#![warn(missing_docs)]
