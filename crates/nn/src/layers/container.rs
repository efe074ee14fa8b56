//! Containers: [`Sequential`] and [`ModuleList`].

use std::sync::Arc;

use autograd::Var;
use tensor_core::Result;

use crate::module::{Forward, Module, Training, Visitor};

/// Layers applied in order; children are named "0", "1", ... ("0.weight").
///
/// Cloning shares the layers (and so their parameters).
///
/// ```
/// use autograd::Var;
/// use nn::{Forward, Linear, Module, ReLU, Sequential};
/// use tensor_core::{DType, Device, Tensor};
/// let mut net = Sequential::new();
/// net.push(Linear::new(4, 8, true)?);
/// net.push(ReLU);
/// net.push(Linear::new(8, 3, true)?);
/// let names: Vec<String> = net.named_parameters().into_iter().map(|(n, _)| n).collect();
/// assert_eq!(names, ["0.weight", "0.bias", "2.weight", "2.bias"]);
/// assert_eq!(net.len(), 3);
/// assert_eq!(net[2].num_parameters(), 27);
/// let y = net.forward(&Var::from(Tensor::ones([5, 4], DType::F32, &Device::cpu())?))?;
/// assert_eq!(y.dims(), &[5, 3]);
/// # Ok::<(), tensor_core::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct Sequential {
    layers: Vec<Arc<dyn Forward>>,
    training: Training,
}

impl Sequential {
    /// An empty container.
    pub fn new() -> Sequential {
        Sequential::default()
    }

    /// A container of `layers`, in order.
    pub fn from_layers(layers: Vec<Box<dyn Forward>>) -> Sequential {
        Sequential { layers: layers.into_iter().map(Arc::from).collect(), training: Training::new() }
    }

    /// Appends a layer.
    pub fn push(&mut self, layer: impl Forward + 'static) -> &mut Sequential {
        self.layers.push(Arc::new(layer));
        self
    }

    /// Appends a layer, builder style.
    #[allow(clippy::should_implement_trait)] // a builder step, not arithmetic
    pub fn add(mut self, layer: impl Forward + 'static) -> Sequential {
        self.layers.push(Arc::new(layer));
        self
    }

    /// Number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// True without layers.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// Layer `i`, if there is one.
    pub fn get(&self, i: usize) -> Option<&dyn Forward> {
        self.layers.get(i).map(|l| &**l)
    }

    /// The layers in order.
    pub fn iter(&self) -> impl Iterator<Item = &dyn Forward> {
        self.layers.iter().map(|l| &**l)
    }
}

impl From<Vec<Box<dyn Forward>>> for Sequential {
    fn from(layers: Vec<Box<dyn Forward>>) -> Sequential {
        Sequential::from_layers(layers)
    }
}

impl std::ops::Index<usize> for Sequential {
    type Output = dyn Forward;
    fn index(&self, i: usize) -> &(dyn Forward + 'static) {
        &*self.layers[i]
    }
}

impl Module for Sequential {
    fn visit(&self, v: &mut dyn Visitor) {
        v.training(&self.training);
        for (i, l) in self.layers.iter().enumerate() {
            v.module(&i.to_string(), &**l);
        }
    }
}

impl Forward for Sequential {
    fn forward(&self, x: &Var) -> Result<Var> {
        let mut y = x.clone();
        for l in &self.layers {
            y = l.forward(&y)?;
        }
        Ok(y)
    }
}

/// A list of modules named "0", "1", ..., used from a custom module's `forward`
/// (it has no `forward` of its own).
#[derive(Clone, Default)]
pub struct ModuleList {
    modules: Vec<Arc<dyn Forward>>,
    training: Training,
}

impl ModuleList {
    /// An empty list.
    pub fn new() -> ModuleList {
        ModuleList::default()
    }

    /// Appends a module.
    pub fn push(&mut self, m: impl Forward + 'static) -> &mut ModuleList {
        self.modules.push(Arc::new(m));
        self
    }

    /// Number of modules.
    pub fn len(&self) -> usize {
        self.modules.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.modules.is_empty()
    }

    /// Module `i`, if there is one.
    pub fn get(&self, i: usize) -> Option<&dyn Forward> {
        self.modules.get(i).map(|l| &**l)
    }

    /// The modules in order.
    pub fn iter(&self) -> impl Iterator<Item = &dyn Forward> {
        self.modules.iter().map(|l| &**l)
    }
}

impl std::ops::Index<usize> for ModuleList {
    type Output = dyn Forward;
    fn index(&self, i: usize) -> &(dyn Forward + 'static) {
        &*self.modules[i]
    }
}

impl Module for ModuleList {
    fn visit(&self, v: &mut dyn Visitor) {
        v.training(&self.training);
        for (i, m) in self.modules.iter().enumerate() {
            v.module(&i.to_string(), &**m);
        }
    }
}
