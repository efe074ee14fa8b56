//! Neural-network modules, layers, losses and initialisers.
#![warn(missing_docs)]
