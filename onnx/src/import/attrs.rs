//! Typed access to a node's attributes, with ONNX's defaults and clear errors.

use crate::proto::{attribute_type as at, AttributeProto, TensorProto};

/// A node's attributes.
pub(crate) struct Attrs<'a>(pub &'a [AttributeProto]);

impl<'a> Attrs<'a> {
    fn get(&self, name: &str, want: i32) -> Result<Option<&'a AttributeProto>, String> {
        let Some(a) = self.0.iter().find(|a| a.name == name) else {
            return Ok(None);
        };
        if !a.ref_attr_name.is_empty() {
            return Err(format!("attribute '{name}' refers to a function attribute, which is not supported"));
        }
        // `type` is required by the spec, but old exporters left it unset: trust the field then.
        if a.r#type != 0 && a.r#type != want {
            return Err(format!("attribute '{name}' has type {}, expected {want}", a.r#type));
        }
        Ok(Some(a))
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|a| a.name == name)
    }

    pub fn int(&self, name: &str, default: i64) -> Result<i64, String> {
        Ok(self.get(name, at::INT)?.map_or(default, |a| a.i))
    }

    pub fn float(&self, name: &str, default: f32) -> Result<f32, String> {
        Ok(self.get(name, at::FLOAT)?.map_or(default, |a| a.f))
    }

    pub fn ints(&self, name: &str) -> Result<Option<Vec<i64>>, String> {
        Ok(self.get(name, at::INTS)?.map(|a| a.ints.clone()))
    }

    pub fn floats(&self, name: &str) -> Result<Option<Vec<f32>>, String> {
        Ok(self.get(name, at::FLOATS)?.map(|a| a.floats.clone()))
    }

    pub fn string(&self, name: &str) -> Result<Option<String>, String> {
        self.get(name, at::STRING)?
            .map(|a| String::from_utf8(a.s.clone()).map_err(|_| format!("attribute '{name}' is not UTF-8")))
            .transpose()
    }

    pub fn tensor(&self, name: &str) -> Result<Option<&'a TensorProto>, String> {
        Ok(self.get(name, at::TENSOR)?.and_then(|a| a.t.as_ref()))
    }
}
