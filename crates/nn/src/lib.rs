//! Neural-network modules, layers, losses and initialisers, on [`autograd`].
//!
//! - [`Module`]: a model part that shows its parameters, buffers and children by
//!   *visiting* (one line per field); naming (`"features.0.weight"`), train/eval,
//!   freezing, moving, `state_dict`/`load_state_dict` and safetensors files all come
//!   from that.
//! - [`Forward`]: `forward(&self, &Var) -> Result<Var>`, the one method a layer writes.
//! - [`Param`]: a shared leaf `Var` that requires grad; cloning a module shares them.
//! - Layers with PyTorch's default initialisation (recurrent ones too: [`LSTM`],
//!   [`GRU`], [`RNN`] and their cells), [`Sequential`], [`ModuleList`], [`loss`]
//!   functions and [`init`]ialisers; [`Factory`] builds them in another dtype or on
//!   another device (PyTorch's `dtype=`/`device=`), and
//!   [`tensor_core::set_default_dtype`] changes the default float dtype.
//!
//! ```
//! use autograd::Var;
//! use nn::loss::{cross_entropy, CrossEntropyOptions};
//! use nn::{Forward, Linear, Module, ReLU, Sequential};
//! use tensor_core::{DType, Device, Tensor};
//!
//! tensor_core::manual_seed(0);
//! let net = Sequential::new().add(Linear::new(4, 16, true)?).add(ReLU).add(Linear::new(16, 3, true)?);
//! let x = Var::from(Tensor::randn([8, 4], DType::F32, &Device::cpu())?);
//! let y = Tensor::new(&[0i64, 1, 2, 0, 1, 2, 0, 1]);
//! let loss = cross_entropy(&net.forward(&x)?, &y, &CrossEntropyOptions::default())?;
//! loss.backward()?;
//! for (name, p) in net.named_parameters() {
//!     assert_eq!(p.grad().unwrap().dims(), p.dims().as_slice(), "{name}");
//! }
//! # Ok::<(), tensor_core::Error>(())
//! ```
#![warn(missing_docs)]

mod factory;
pub mod init;
pub mod layers;
pub mod loss;
mod module;
mod state;

pub use factory::Factory;
pub use layers::activation::{LeakyReLU, LogSoftmax, ReLU, SiLU, Sigmoid, Softmax, Tanh, ELU, GELU};
pub use layers::attention::{generate_square_subsequent_mask, MhaConfig, MhaOptions, MultiheadAttention};
pub use layers::container::{ModuleList, Sequential};
pub use layers::conv::{Conv1d, Conv1dConfig, Conv2d, Conv2dConfig, ConvTranspose2d};
pub use layers::dropout::Dropout;
pub use layers::embedding::Embedding;
pub use layers::linear::{Bilinear, Linear};
pub use layers::norm::{BatchNorm, BatchNorm1d, BatchNorm2d, BatchNormConfig, GroupNorm, LayerNorm, RMSNorm};
pub use layers::pool::{AdaptiveAvgPool2d, AvgPool2d, MaxPool2d};
pub use layers::rnn::{
    GRUCell, GruConfig, LSTMCell, LstmConfig, LstmState, Nonlinearity, RNNCell, RnnConfig, GRU, LSTM, RNN,
};
pub use layers::rope::{apply_rotary_emb, RotaryEmbedding};
pub use layers::shape::{Flatten, Identity, Unflatten};
pub use layers::transformer::{
    Activation, DecoderMasks, EncoderMasks, Transformer, TransformerConfig, TransformerDecoder,
    TransformerDecoderLayer, TransformerEncoder, TransformerEncoderLayer, TransformerMasks,
};
pub use loss::Reduction;
pub use module::{Buffer, Forward, Module, Param, Training, Visitor};
pub use state::{write_atomic, IncompatibleKeys, StateDict};
