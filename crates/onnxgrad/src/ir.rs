//! The graph IR: element types, constant tensors, values with static shapes, nodes and the [`Graph`] that owns
//! them, with readable, scoped names.
//!
//! A graph is in SSA form and always topologically sorted: a node can only consume values that exist when it is
//! added. Every value has a static shape, which the builder computes when it adds a node; autodiff relies on it
//! (to undo broadcasting, to size convolution gradients).
use crate::error::{invalid, Error, Result};
use crate::ops::Op;
pub use crate::tensor::{DType, Tensor, TensorData};
use std::collections::{HashMap, HashSet};
use std::ops::{Deref, DerefMut};

/// Identifies a value of one [`Graph`]. Only meaningful for the graph that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub(crate) usize);

impl ValueId {
    /// Position in [`Graph::values`].
    pub fn index(self) -> usize {
        self.0
    }
}

/// Where a value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A graph input, fed at run time.
    Input,
    /// A named constant stored in the model.
    Initializer(Tensor),
    /// Output number `slot` of node number `node`.
    Node { node: usize, slot: usize },
}

/// A tensor-valued SSA value with a static shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub source: Source,
}

impl Value {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// One operator application. `inputs` include constant operands (shapes, axes) as initializer values.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    pub op: Op,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
}

/// A typed ONNX graph under construction.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    name: String,
    values: Vec<Value>,
    nodes: Vec<Node>,
    inputs: Vec<ValueId>,
    outputs: Vec<ValueId>,
    scopes: Vec<String>,
    value_names: HashMap<String, ValueId>,
    node_names: HashSet<String>,
    scalar_cache: HashMap<(DType, String), ValueId>,
    state_updates: Vec<(ValueId, ValueId)>,
    /// Node ranges with a hand-written backward rule (see [`crate::autodiff`]).
    pub(crate) fused: Vec<FusedRegion>,
    /// Whether [`crate::gradients`] uses the fused rules (default) or differentiates the primitives.
    pub(crate) primitive_backward: bool,
}

/// Nodes `first..=last` compute a composite whose gradient has a compact closed form; autodiff applies it instead
/// of differentiating each node, as long as only the composite's main output carries a gradient.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FusedRegion {
    pub first: usize,
    pub last: usize,
    pub kind: FusedKind,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FusedKind {
    /// Training-mode batch norm `y = xhat * scale + bias`, `xhat = (x - mean) * inv` over every axis but 1
    /// (`mean`, `var`, `inv`: kept-dims `[1, C, 1, ...]`).
    BatchNorm {
        x: ValueId,
        scale: ValueId,
        bias: ValueId,
        mean: ValueId,
        var: ValueId,
        inv: ValueId,
        xhat: ValueId,
        y: ValueId,
    },
}

impl Graph {
    /// An empty graph; `name` becomes `GraphProto.name`.
    pub fn new(name: &str) -> Graph {
        Graph { name: name.to_string(), ..Graph::default() }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// All values, indexed by [`ValueId::index`].
    pub fn values(&self) -> &[Value] {
        &self.values
    }

    /// All nodes in topological order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Graph inputs in declaration order.
    pub fn inputs(&self) -> &[ValueId] {
        &self.inputs
    }

    /// Graph outputs in declaration order.
    pub fn outputs(&self) -> &[ValueId] {
        &self.outputs
    }

    pub fn value(&self, v: ValueId) -> &Value {
        &self.values[v.0]
    }

    pub fn shape(&self, v: ValueId) -> &[usize] {
        &self.values[v.0].shape
    }

    pub fn dtype(&self, v: ValueId) -> DType {
        self.values[v.0].dtype
    }

    pub fn value_name(&self, v: ValueId) -> &str {
        &self.values[v.0].name
    }

    /// The value called `name`, if any.
    pub fn find(&self, name: &str) -> Option<ValueId> {
        self.value_names.get(name).copied()
    }

    /// The node that computes `v`, if it is a node output.
    pub fn producer(&self, v: ValueId) -> Option<&Node> {
        match self.values[v.0].source {
            Source::Node { node, .. } => Some(&self.nodes[node]),
            _ => None,
        }
    }

    /// Enters a name scope: names made while the returned guard lives are prefixed with `name.`.
    /// The guard dereferences to the graph, so `let mut g = g.scope("conv2"); g.relu(x)?` works, and scopes nest.
    pub fn scope(&mut self, name: &str) -> Scope<'_> {
        self.push_scope(name);
        Scope { graph: self }
    }

    /// Enters a name scope until [`Graph::pop_scope`] (for code that cannot hold a [`Scope`] guard).
    pub fn push_scope(&mut self, name: &str) {
        self.scopes.push(name.to_string());
    }

    /// Leaves the innermost name scope.
    pub fn pop_scope(&mut self) {
        self.scopes.pop();
    }

    /// `base` prefixed by the current scopes, e.g. `d.conv2.weight`.
    pub fn scoped_name(&self, base: &str) -> String {
        self.scopes.iter().map(String::as_str).chain([base]).filter(|s| !s.is_empty()).collect::<Vec<_>>().join(".")
    }

    /// Runs `f` with the scopes replaced by `scopes` (autodiff names backward nodes after the forward node).
    pub(crate) fn with_scopes<T>(&mut self, scopes: Vec<String>, f: impl FnOnce(&mut Graph) -> T) -> T {
        let saved = std::mem::replace(&mut self.scopes, scopes);
        let out = f(self);
        self.scopes = saved;
        out
    }

    /// Chooses how [`crate::gradients`] differentiates composites that have a hand-written backward rule
    /// (training-mode batch norm): `false` (default) applies the rule, `true` differentiates their primitive
    /// operators one by one (more nodes, same values up to rounding; kept for checking the rules).
    pub fn set_primitive_backward(&mut self, on: bool) {
        self.primitive_backward = on;
    }

    /// Declares a graph input with an exact (unscoped) name: inputs are the interface a runtime binds.
    pub fn input(&mut self, name: &str, dtype: DType, shape: &[usize]) -> Result<ValueId> {
        self.claim_value_name(name)?;
        let v = self.push_value(name.to_string(), dtype, shape.to_vec(), Source::Input);
        self.inputs.push(v);
        Ok(v)
    }

    /// Adds a named constant (an ONNX initializer) with an exact name.
    pub fn initializer(&mut self, name: &str, tensor: Tensor) -> Result<ValueId> {
        self.claim_value_name(name)?;
        let (dtype, shape) = (tensor.dtype(), tensor.shape.clone());
        Ok(self.push_value(name.to_string(), dtype, shape, Source::Initializer(tensor)))
    }

    /// Adds a constant named after the current scope and `base` (made unique when needed).
    pub fn constant(&mut self, base: &str, tensor: Tensor) -> ValueId {
        let name = self.fresh_value_name(&self.scoped_name(base));
        let (dtype, shape) = (tensor.dtype(), tensor.shape.clone());
        self.push_value(name, dtype, shape, Source::Initializer(tensor))
    }

    /// A rank-0 constant, shared by every use of the same (dtype, value) in the graph, named after its value as
    /// stored (`const.f32.0.5`).
    pub fn scalar(&mut self, dtype: DType, value: f64) -> ValueId {
        let tensor = Tensor::scalar(dtype, value);
        let shown = match &tensor.data {
            TensorData::F32(v) => v[0].to_string(),
            TensorData::F64(v) => v[0].to_string(),
            TensorData::I64(v) => v[0].to_string(),
            TensorData::Bool(v) => v[0].to_string(),
            TensorData::U8(v) => v[0].to_string(),
        };
        let key = (dtype, shown);
        if let Some(&v) = self.scalar_cache.get(&key) {
            return v;
        }
        let name = self.fresh_value_name(&format!("const.{}.{}", dtype.short_name(), key.1));
        let v = self.push_value(name, dtype, vec![], Source::Initializer(tensor));
        self.scalar_cache.insert(key, v);
        v
    }

    /// A rank-0 constant of the same dtype as `like`.
    pub fn scalar_like(&mut self, like: ValueId, value: f64) -> ValueId {
        self.scalar(self.dtype(like), value)
    }

    /// A rank-1 `i64` constant (shapes, axes, pads), named `base` in the current scope.
    pub(crate) fn i64_constant(&mut self, base: &str, values: &[i64]) -> ValueId {
        self.constant(base, Tensor { shape: vec![values.len()], data: TensorData::I64(values.to_vec()) })
    }

    /// Declares `v` as a graph output called `name` (exact). A node output that is not yet named that way is
    /// renamed; a graph input, an initializer, or a value that is already an output goes through an `Identity`,
    /// so that every output is computed by a node (a runtime may bind output buffers distinct from inputs).
    pub fn output(&mut self, v: ValueId, name: &str) -> Result<ValueId> {
        let out = if self.value_name(v) == name && !self.outputs.contains(&v) {
            v
        } else if matches!(self.values[v.0].source, Source::Node { .. }) && !self.outputs.contains(&v) {
            self.rename(v, name)?;
            v
        } else {
            self.claim_value_name(name)?;
            let (dtype, shape) = (self.dtype(v), self.shape(v).to_vec());
            let node_name = self.fresh_node_name(name);
            self.add_node_named(node_name, Op::Identity, vec![v], vec![(name.to_string(), dtype, shape)])[0]
        };
        if !matches!(self.values[out.0].source, Source::Node { .. }) {
            return Err(invalid("output", format!("{name:?} must be computed by a node")));
        }
        self.outputs.push(out);
        Ok(out)
    }

    /// Gives a value a new exact name (graph inputs keep theirs: they are an interface).
    pub fn rename(&mut self, v: ValueId, name: &str) -> Result<()> {
        if self.value_name(v) == name {
            return Ok(());
        }
        if self.inputs.contains(&v) {
            return Err(invalid("rename", format!("graph input {:?} cannot be renamed", self.value_name(v))));
        }
        self.claim_value_name(name)?;
        let old = std::mem::replace(&mut self.values[v.0].name, name.to_string());
        self.value_names.remove(&old);
        self.value_names.insert(name.to_string(), v);
        Ok(())
    }

    /// Records that graph input `state` gets the new value `new_value` after a run (a batch-norm running mean, a
    /// parameter after an optimiser step). [`crate::optim`] declares these as outputs named `<state>.new`.
    /// A later call for the same state replaces the earlier one.
    pub fn set_state_update(&mut self, state: ValueId, new_value: ValueId) -> Result<()> {
        if !self.inputs.contains(&state) {
            return Err(invalid("set_state_update", format!("{:?} is not a graph input", self.value_name(state))));
        }
        if self.shape(state) != self.shape(new_value) || self.dtype(state) != self.dtype(new_value) {
            return Err(invalid(
                "set_state_update",
                format!("{:?}: the new value's type differs from the state's", self.value_name(state)),
            ));
        }
        self.state_updates.retain(|(s, _)| *s != state);
        self.state_updates.push((state, new_value));
        Ok(())
    }

    /// The registered (state input, new value) pairs, in registration order.
    pub fn state_updates(&self) -> &[(ValueId, ValueId)] {
        &self.state_updates
    }

    /// Removes and returns the registered state updates (to declare some of them later, e.g. when one graph holds
    /// two optimiser steps and the running statistics advance again between them).
    pub fn take_state_updates(&mut self) -> Vec<(ValueId, ValueId)> {
        std::mem::take(&mut self.state_updates)
    }

    /// Appends a node whose outputs get names derived from `base` in the current scope: the first output is
    /// called like the node, further ones `<node>.<k>`. Returns the output ids.
    pub(crate) fn add_node(
        &mut self,
        base: &str,
        op: Op,
        inputs: Vec<ValueId>,
        outs: Vec<(DType, Vec<usize>)>,
    ) -> Vec<ValueId> {
        let scoped = self.scoped_name(base);
        let node_name = self.fresh_node_name(&self.fresh_value_name(&scoped));
        let named = outs
            .into_iter()
            .enumerate()
            .map(|(k, (dtype, shape))| {
                let name = if k == 0 { node_name.clone() } else { format!("{node_name}.{k}") };
                (self.fresh_value_name(&name), dtype, shape)
            })
            .collect();
        self.add_node_named(node_name, op, inputs, named)
    }

    pub(crate) fn add_node_named(
        &mut self,
        node_name: String,
        op: Op,
        inputs: Vec<ValueId>,
        outs: Vec<(String, DType, Vec<usize>)>,
    ) -> Vec<ValueId> {
        let node = self.nodes.len();
        self.node_names.insert(node_name.clone());
        let outputs: Vec<ValueId> = outs
            .into_iter()
            .enumerate()
            .map(|(slot, (name, dtype, shape))| self.push_value(name, dtype, shape, Source::Node { node, slot }))
            .collect();
        self.nodes.push(Node { name: node_name, op, inputs, outputs: outputs.clone() });
        outputs
    }

    /// Appends `v` to the graph outputs as it is named (lowering copies outputs this way).
    pub(crate) fn push_output(&mut self, v: ValueId) {
        self.outputs.push(v);
    }

    fn push_value(&mut self, name: String, dtype: DType, shape: Vec<usize>, source: Source) -> ValueId {
        let v = ValueId(self.values.len());
        self.value_names.insert(name.clone(), v);
        self.values.push(Value { name, dtype, shape, source });
        v
    }

    fn claim_value_name(&self, name: &str) -> Result<()> {
        if name.is_empty() {
            return Err(invalid("name", "value names must not be empty"));
        }
        if self.value_names.contains_key(name) {
            return Err(Error::DuplicateName(name.to_string()));
        }
        Ok(())
    }

    /// `base`, or `base_1`, `base_2`... whichever is not a value name yet.
    pub(crate) fn fresh_value_name(&self, base: &str) -> String {
        fresh(base, |n| self.value_names.contains_key(n))
    }

    fn fresh_node_name(&self, base: &str) -> String {
        fresh(base, |n| self.node_names.contains(n))
    }
}

fn fresh(base: &str, taken: impl Fn(&str) -> bool) -> String {
    if !taken(base) {
        return base.to_string();
    }
    (1..).map(|k| format!("{base}_{k}")).find(|n| !taken(n)).expect("an unused name exists")
}

/// A name scope that ends when dropped; dereferences to the [`Graph`].
pub struct Scope<'g> {
    graph: &'g mut Graph,
}

impl Deref for Scope<'_> {
    type Target = Graph;
    fn deref(&self) -> &Graph {
        self.graph
    }
}

impl DerefMut for Scope<'_> {
    fn deref_mut(&mut self) -> &mut Graph {
        self.graph
    }
}

impl Drop for Scope<'_> {
    fn drop(&mut self) {
        self.graph.pop_scope();
    }
}
