//! ONNX protobuf messages and the [`Graph`] -> `ModelProto` encoder.
//!
//! The message structs are declared by hand with `prost` derives, carrying the field numbers of `onnx.proto`
//! (ONNX 1.x, proto2 syntax) for only the fields this crate writes or reads. Why by hand: generating them needs
//! `protoc` at build time (prost-build), and no maintained crate ships the ONNX types without that step. Unknown
//! fields are skipped when decoding, so these structs also read models written by other tools.
//!
//! proto2 `optional` scalars are declared as plain prost scalars: prost leaves out default values (0, "") when
//! encoding, and a proto2 reader sees an absent field as its default, which is the same value.
use crate::error::{Error, Result};
use crate::ir::{DType, Graph, Source, Tensor, TensorData, ValueId};
use crate::ops::Attr;
use prost::Message;

/// ONNX IR version written to `ModelProto.ir_version` (8: ONNX 1.13, the release that introduced opset 18).
pub const IR_VERSION: i64 = 8;
/// The default-domain opset every graph is written for. Opset 18 takes reduction axes as inputs.
pub const OPSET: i64 = 18;
/// `ModelProto.producer_name`.
pub const PRODUCER: &str = "onnxgrad";

#[derive(Clone, PartialEq, Message)]
pub struct ModelProto {
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    #[prost(string, tag = "2")]
    pub producer_name: String,
    #[prost(string, tag = "3")]
    pub producer_version: String,
    #[prost(string, tag = "6")]
    pub doc_string: String,
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct OperatorSetIdProto {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(int64, tag = "2")]
    pub version: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    #[prost(string, tag = "10")]
    pub doc_string: String,
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "13")]
    pub value_info: Vec<ValueInfoProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(string, tag = "4")]
    pub op_type: String,
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
    #[prost(string, tag = "7")]
    pub domain: String,
}

/// `AttributeProto.AttributeType` values used here.
pub mod attribute_type {
    pub const FLOAT: i32 = 1;
    pub const INT: i32 = 2;
    pub const STRING: i32 = 3;
    pub const TENSOR: i32 = 4;
    pub const INTS: i32 = 7;
}

#[derive(Clone, PartialEq, Message)]
pub struct AttributeProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(float, tag = "2")]
    pub f: f32,
    #[prost(int64, tag = "3")]
    pub i: i64,
    #[prost(bytes = "vec", tag = "4")]
    pub s: Vec<u8>,
    #[prost(message, optional, tag = "5")]
    pub t: Option<TensorProto>,
    #[prost(float, repeated, packed = "false", tag = "7")]
    pub floats: Vec<f32>,
    #[prost(int64, repeated, packed = "false", tag = "8")]
    pub ints: Vec<i64>,
    #[prost(int32, tag = "20")]
    pub r#type: i32,
}

#[derive(Clone, PartialEq, Message)]
pub struct TensorProto {
    #[prost(int64, repeated, packed = "false", tag = "1")]
    pub dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    #[prost(int32, repeated, tag = "5")]
    pub int32_data: Vec<i32>,
    #[prost(int64, repeated, tag = "7")]
    pub int64_data: Vec<i64>,
    #[prost(string, tag = "8")]
    pub name: String,
    #[prost(bytes = "vec", tag = "9")]
    pub raw_data: Vec<u8>,
    #[prost(double, repeated, tag = "10")]
    pub double_data: Vec<f64>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ValueInfoProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
}

/// `TypeProto`; its `value` oneof is reduced to the tensor case (a oneof member is an optional field on the wire).
#[derive(Clone, PartialEq, Message)]
pub struct TypeProto {
    #[prost(message, optional, tag = "1")]
    pub tensor_type: Option<TypeProtoTensor>,
}

/// `TypeProto.Tensor`.
#[derive(Clone, PartialEq, Message)]
pub struct TypeProtoTensor {
    #[prost(int32, tag = "1")]
    pub elem_type: i32,
    /// Present even for scalars (an empty shape means rank 0; an absent one, unknown rank).
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<Dimension>,
}

/// `TensorShapeProto.Dimension`: `dim_value` or `dim_param` (a oneof).
#[derive(Clone, PartialEq, Message)]
pub struct Dimension {
    #[prost(int64, optional, tag = "1")]
    pub dim_value: Option<i64>,
    #[prost(string, optional, tag = "2")]
    pub dim_param: Option<String>,
}

impl Graph {
    /// The graph as a complete ONNX model (opset [`OPSET`], IR version [`IR_VERSION`]).
    pub fn to_model_proto(&self) -> ModelProto {
        ModelProto {
            ir_version: IR_VERSION,
            producer_name: PRODUCER.to_string(),
            producer_version: env!("CARGO_PKG_VERSION").to_string(),
            doc_string: String::new(),
            graph: Some(self.graph_proto()),
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: OPSET }],
        }
    }

    /// Serialised `ModelProto`, for `commit_from_memory` or a `.onnx` file.
    pub fn to_onnx_bytes(&self) -> Vec<u8> {
        self.to_model_proto().encode_to_vec()
    }

    /// The graph as a model with a symbolic leading dimension: every graph input and output whose first dimension
    /// is `batch` declares `dim_param: param` there instead (as PyTorch's exports with `dynamic_axes` do), so ONNX
    /// Runtime accepts any batch. The IR stays static; for the serialised graph to be batch-agnostic, each Reshape
    /// that keeps the batch in front gets the shape operand `[0, ...]` ("copy dimension 0"), and intermediate
    /// `value_info` (static shapes) is left out for ONNX Runtime to infer. Meant for inference graphs (no
    /// batch-sized constants): an `Expand` or `ConstantOfShape` to a batch-leading shape is refused.
    pub fn to_model_proto_symbolic_batch(&self, batch: usize, param: &str) -> Result<ModelProto> {
        let mut model = self.to_model_proto();
        let graph = model.graph.as_mut().expect("to_model_proto sets the graph");
        graph.value_info.clear();
        for info in graph.input.iter_mut().chain(graph.output.iter_mut()) {
            let dims = info.r#type.as_mut().and_then(|t| t.tensor_type.as_mut()).and_then(|t| t.shape.as_mut());
            if let Some(first) = dims.and_then(|s| s.dim.first_mut()) {
                if first.dim_value == Some(batch as i64) {
                    *first = Dimension { dim_value: None, dim_param: Some(param.to_string()) };
                }
            }
        }
        let batched = self.batch_dependent_values(batch);
        for (i, node) in self.nodes().iter().enumerate() {
            match &node.op {
                // A Reshape of a weight that happens to have `batch` rows stays static.
                crate::ops::Op::Reshape { shape }
                    if shape.first() == Some(&batch) && batched[node.inputs[0].index()] =>
                {
                    if self.shape(node.inputs[0]).first() != Some(&batch) {
                        let why = format!("{}: moves the batch dimension; it cannot be made symbolic", node.name);
                        return Err(crate::error::invalid("Reshape", why));
                    }
                    let mut dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
                    dims[0] = 0;
                    let name = format!("{}.batch_agnostic_shape", node.name);
                    let operand = Tensor::new(&[dims.len()], TensorData::I64(dims))?;
                    graph.initializer.push(tensor_proto(&name, &operand));
                    graph.node[i].input[1] = name;
                }
                crate::ops::Op::Expand { shape } | crate::ops::Op::ConstantOfShape { shape, .. }
                    if shape.first() == Some(&batch) =>
                {
                    let why = format!("{}: a batch-sized constant shape; it cannot be made symbolic", node.name);
                    return Err(crate::error::invalid(node.op.onnx_type(), why));
                }
                _ => {}
            }
        }
        // The replaced shape operands, unless still used elsewhere.
        let used: std::collections::HashSet<String> = graph.node.iter().flat_map(|n| n.input.iter().cloned()).collect();
        graph.initializer.retain(|t| used.contains(&t.name));
        Ok(model)
    }

    /// Which values depend on a batch-leading graph input (by dataflow, not by size: a weight with as many rows
    /// as the batch is not batched). Nodes are stored in topological order, so one forward pass suffices.
    fn batch_dependent_values(&self, batch: usize) -> Vec<bool> {
        let mut batched = vec![false; self.values().len()];
        for &v in self.inputs() {
            batched[v.index()] = self.shape(v).first() == Some(&batch);
        }
        for node in self.nodes() {
            if node.inputs.iter().any(|v| batched[v.index()]) {
                for v in &node.outputs {
                    batched[v.index()] = true;
                }
            }
        }
        batched
    }

    /// [`Graph::to_model_proto_symbolic_batch`], serialised.
    pub fn to_onnx_bytes_symbolic_batch(&self, batch: usize, param: &str) -> Result<Vec<u8>> {
        Ok(self.to_model_proto_symbolic_batch(batch, param)?.encode_to_vec())
    }

    fn graph_proto(&self) -> GraphProto {
        let names = |ids: &[ValueId]| ids.iter().map(|&v| self.value_name(v).to_string()).collect::<Vec<_>>();
        let node = self
            .nodes()
            .iter()
            .map(|n| NodeProto {
                input: names(&n.inputs),
                output: names(&n.outputs),
                name: n.name.clone(),
                op_type: n.op.onnx_type().to_string(),
                attribute: n.op.attributes().into_iter().map(|(name, a)| attribute_proto(name, a)).collect(),
                domain: String::new(),
            })
            .collect();
        let initializer = self
            .values()
            .iter()
            .filter_map(|v| match &v.source {
                Source::Initializer(t) => Some(tensor_proto(&v.name, t)),
                _ => None,
            })
            .collect();
        let value_info = (0..self.values().len())
            .map(ValueId)
            .filter(|v| matches!(self.value(*v).source, Source::Node { .. }) && !self.outputs().contains(v))
            .map(|v| self.value_info(v))
            .collect();
        GraphProto {
            node,
            name: self.name().to_string(),
            initializer,
            doc_string: String::new(),
            input: self.inputs().iter().map(|&v| self.value_info(v)).collect(),
            output: self.outputs().iter().map(|&v| self.value_info(v)).collect(),
            value_info,
        }
    }

    fn value_info(&self, v: ValueId) -> ValueInfoProto {
        let dim = self.shape(v).iter().map(|&d| Dimension { dim_value: Some(d as i64), dim_param: None }).collect();
        ValueInfoProto {
            name: self.value_name(v).to_string(),
            r#type: Some(TypeProto {
                tensor_type: Some(TypeProtoTensor {
                    elem_type: self.dtype(v).onnx_code(),
                    shape: Some(TensorShapeProto { dim }),
                }),
            }),
        }
    }
}

fn attribute_proto(name: &str, attr: Attr) -> AttributeProto {
    let mut a = AttributeProto { name: name.to_string(), ..AttributeProto::default() };
    match attr {
        Attr::Int(i) => (a.i, a.r#type) = (i, attribute_type::INT),
        Attr::Ints(v) => (a.ints, a.r#type) = (v, attribute_type::INTS),
        Attr::Float(f) => (a.f, a.r#type) = (f, attribute_type::FLOAT),
        Attr::String(s) => (a.s, a.r#type) = (s.into_bytes(), attribute_type::STRING),
        Attr::Tensor(t) => (a.t, a.r#type) = (Some(tensor_proto("", &t)), attribute_type::TENSOR),
    }
    a
}

/// A `TensorProto` holding `t` as little-endian `raw_data`.
pub fn tensor_proto(name: &str, t: &Tensor) -> TensorProto {
    TensorProto {
        dims: t.shape.iter().map(|&d| d as i64).collect(),
        data_type: t.dtype().onnx_code(),
        name: name.to_string(),
        raw_data: t.data.to_le_bytes(),
        ..TensorProto::default()
    }
}

/// Reads a `TensorProto` written with `raw_data` or the typed `*_data` fields.
pub fn tensor_from_proto(p: &TensorProto) -> Result<Tensor> {
    let dtype = DType::from_onnx_code(p.data_type)
        .ok_or_else(|| Error::Tensor(format!("{}: unsupported data_type {}", p.name, p.data_type)))?;
    let shape: Vec<usize> = p.dims.iter().map(|&d| d as usize).collect();
    let data = if !p.raw_data.is_empty() {
        TensorData::from_le_bytes(dtype, &p.raw_data)?
    } else {
        match dtype {
            DType::F32 => TensorData::F32(p.float_data.clone()),
            DType::F64 => TensorData::F64(p.double_data.clone()),
            DType::I64 => TensorData::I64(p.int64_data.clone()),
            DType::Bool => TensorData::Bool(p.int32_data.iter().map(|&x| x != 0).collect()),
            DType::U8 => TensorData::U8(p.int32_data.iter().map(|&x| x as u8).collect()),
        }
    };
    Tensor::new(&shape, data)
}

/// Decodes a serialised `ModelProto`.
pub fn decode_model(bytes: &[u8]) -> Result<ModelProto> {
    Ok(ModelProto::decode(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reshape_operand(model: &ModelProto, node: &str) -> String {
        let graph = model.graph.as_ref().unwrap();
        graph.node.iter().find(|n| n.name == node).unwrap().input[1].clone()
    }

    #[test]
    fn symbolic_batch_rewrites_batched_reshapes_only() {
        // Batch 2, and a constant weight that also has 2 rows: only the reshape fed by `x` becomes `[0, ...]`.
        let mut g = Graph::new("t");
        let x = g.input("x", DType::F32, &[2, 3]).unwrap();
        let w = g.constant("w", Tensor::new(&[2, 3], TensorData::F32(vec![0.5; 6])).unwrap());
        let wr = g.with_scopes(vec!["w_flat".into()], |g| g.reshape(w, &[2, 3])).unwrap();
        let xr = g.with_scopes(vec!["x_flat".into()], |g| g.reshape(x, &[2, 3])).unwrap();
        let y = g.add(xr, wr).unwrap();
        g.output(y, "y").unwrap();
        let model = g.to_model_proto_symbolic_batch(2, "n").unwrap();
        let names: Vec<String> = g.nodes().iter().map(|n| n.name.clone()).collect();
        let x_node = names.iter().find(|n| n.starts_with("x_flat")).unwrap();
        let w_node = names.iter().find(|n| n.starts_with("w_flat")).unwrap();
        assert!(reshape_operand(&model, x_node).ends_with(".batch_agnostic_shape"));
        assert!(!reshape_operand(&model, w_node).ends_with(".batch_agnostic_shape"));
        let input = &model.graph.as_ref().unwrap().input[0];
        let dims = &input.r#type.as_ref().unwrap().tensor_type.as_ref().unwrap().shape.as_ref().unwrap().dim;
        assert_eq!(dims[0].dim_param.as_deref(), Some("n"));
    }

    #[test]
    fn symbolic_batch_refuses_a_reshape_that_moves_the_batch() {
        let mut g = Graph::new("t");
        let x = g.input("x", DType::F32, &[2, 3]).unwrap();
        let t = g.transpose(x, &[1, 0]).unwrap();
        let r = g.reshape(t, &[2, 3]).unwrap();
        g.output(r, "y").unwrap();
        let err = g.to_model_proto_symbolic_batch(2, "n").unwrap_err().to_string();
        assert!(err.contains("moves the batch dimension"), "{err}");
    }
}
