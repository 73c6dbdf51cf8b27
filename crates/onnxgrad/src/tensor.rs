//! Element types and constant tensors: what graph values hold and operators read attributes from. A module of its
//! own so that the IR (which names operators) and the operators (which name tensors) do not import each other.
use crate::error::{Error, Result};

/// Element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    F32,
    /// For gradient checks: ONNX Runtime's CPU kernels support doubles for most (not all) operators.
    F64,
    I64,
    Bool,
    U8,
}

impl DType {
    /// The `TensorProto.DataType` code.
    pub fn onnx_code(self) -> i32 {
        match self {
            DType::F32 => 1,
            DType::U8 => 2,
            DType::I64 => 7,
            DType::Bool => 9,
            DType::F64 => 11,
        }
    }

    /// The dtype of a `TensorProto.DataType` code, when it is one this crate handles.
    pub fn from_onnx_code(code: i32) -> Option<DType> {
        [DType::F32, DType::F64, DType::I64, DType::Bool, DType::U8].into_iter().find(|d| d.onnx_code() == code)
    }

    /// Floating-point types are the differentiable ones.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64)
    }

    /// Short lower-case name (`f32`, `i64`...), used in constant names.
    pub fn short_name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::I64 => "i64",
            DType::Bool => "bool",
            DType::U8 => "u8",
        }
    }
}

/// The elements of a constant tensor, row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I64(Vec<i64>),
    Bool(Vec<bool>),
    U8(Vec<u8>),
}

impl TensorData {
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::F64(_) => DType::F64,
            TensorData::I64(_) => DType::I64,
            TensorData::Bool(_) => DType::Bool,
            TensorData::U8(_) => DType::U8,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::F64(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::Bool(v) => v.len(),
            TensorData::U8(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Little-endian bytes, as ONNX `raw_data` stores them (bool: one byte per element).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        match self {
            TensorData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::Bool(v) => v.iter().map(|&b| b as u8).collect(),
            TensorData::U8(v) => v.clone(),
        }
    }

    /// Parses little-endian `raw_data` of `dtype`.
    pub fn from_le_bytes(dtype: DType, bytes: &[u8]) -> Result<TensorData> {
        let width = match dtype {
            DType::F32 => 4,
            DType::F64 | DType::I64 => 8,
            DType::Bool | DType::U8 => 1,
        };
        if !bytes.len().is_multiple_of(width) {
            return Err(Error::Tensor(format!("{} raw bytes are not a whole number of {dtype:?}", bytes.len())));
        }
        let chunks = bytes.chunks_exact(width);
        Ok(match dtype {
            DType::F32 => TensorData::F32(chunks.map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()),
            DType::F64 => TensorData::F64(chunks.map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect()),
            DType::I64 => TensorData::I64(chunks.map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect()),
            DType::Bool => TensorData::Bool(bytes.iter().map(|&b| b != 0).collect()),
            DType::U8 => TensorData::U8(bytes.to_vec()),
        })
    }

    /// `n` copies of `value` converted to `dtype` (floats truncate towards zero for integer types).
    pub fn filled(dtype: DType, n: usize, value: f64) -> TensorData {
        match dtype {
            DType::F32 => TensorData::F32(vec![value as f32; n]),
            DType::F64 => TensorData::F64(vec![value; n]),
            DType::I64 => TensorData::I64(vec![value as i64; n]),
            DType::Bool => TensorData::Bool(vec![value != 0.0; n]),
            DType::U8 => TensorData::U8(vec![value as u8; n]),
        }
    }
}

/// A constant tensor: shape plus row-major data.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: TensorData,
}

impl Tensor {
    /// A tensor, checking that the data has as many elements as the shape.
    pub fn new(shape: &[usize], data: TensorData) -> Result<Tensor> {
        let numel: usize = shape.iter().product();
        if numel != data.len() {
            return Err(Error::Tensor(format!("shape {shape:?} holds {numel} elements, data has {}", data.len())));
        }
        Ok(Tensor { shape: shape.to_vec(), data })
    }

    pub fn f32(shape: &[usize], data: Vec<f32>) -> Result<Tensor> {
        Tensor::new(shape, TensorData::F32(data))
    }

    pub fn f64(shape: &[usize], data: Vec<f64>) -> Result<Tensor> {
        Tensor::new(shape, TensorData::F64(data))
    }

    pub fn i64(shape: &[usize], data: Vec<i64>) -> Result<Tensor> {
        Tensor::new(shape, TensorData::I64(data))
    }

    /// A rank-0 tensor.
    pub fn scalar(dtype: DType, value: f64) -> Tensor {
        Tensor { shape: vec![], data: TensorData::filled(dtype, 1, value) }
    }

    /// Every element equal to `value`.
    pub fn full(dtype: DType, shape: &[usize], value: f64) -> Tensor {
        Tensor { shape: shape.to_vec(), data: TensorData::filled(dtype, shape.iter().product(), value) }
    }

    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    pub fn numel(&self) -> usize {
        self.data.len()
    }
}
