//! How values become bytes in a checkpoint: plain data only (JSON), so that
//! loading a checkpoint never builds anything but the types the program
//! expects or registered.
//!
//! Typed stores and `exec` results whose type the engine knows go through
//! serde. Values whose type is erased (a [`SharedStore`]'s, a runtime flow's
//! `exec` results) go through a registry of types: the plain ones are there
//! from the start, others are added with [`register`].

use std::any::{Any, TypeId, type_name};
use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use parking_lot::RwLock;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::store::SharedStore;

type Encode = fn(&dyn Any) -> Result<serde_json::Value, String>;
type Decode = fn(serde_json::Value) -> Result<Box<dyn Any + Send + Sync>, String>;

#[derive(Clone, Copy)]
struct Codec {
    name: &'static str,
    encode: Encode,
    decode: Decode,
}

#[derive(Default)]
struct Registry {
    by_type: HashMap<TypeId, Codec>,
    by_name: HashMap<&'static str, Codec>,
}

fn encode_as<T: Serialize + 'static>(value: &dyn Any) -> Result<serde_json::Value, String> {
    let value = value.downcast_ref::<T>().ok_or("a value of another type")?;
    serde_json::to_value(value).map_err(|e| e.to_string())
}

fn decode_as<T: DeserializeOwned + Send + Sync + 'static>(
    value: serde_json::Value,
) -> Result<Box<dyn Any + Send + Sync>, String> {
    Ok(Box::new(serde_json::from_value::<T>(value).map_err(|e| e.to_string())?))
}

fn decode_static_str(value: serde_json::Value) -> Result<Box<dyn Any + Send + Sync>, String> {
    // A `&'static str` comes back as a leaked string: it happens once per
    // resumed node, and the type asks for nothing less.
    let text: String = serde_json::from_value(value).map_err(|e| e.to_string())?;
    let leaked: &'static str = Box::leak(text.into_boxed_str());
    Ok(Box::new(leaked))
}

impl Registry {
    fn add<T: Serialize + DeserializeOwned + Send + Sync + 'static>(&mut self) {
        self.insert::<T>(Codec { name: type_name::<T>(), encode: encode_as::<T>, decode: decode_as::<T> });
    }

    fn insert<T: 'static>(&mut self, codec: Codec) {
        self.by_type.insert(TypeId::of::<T>(), codec);
        self.by_name.insert(codec.name, codec);
    }

    fn with_plain_types() -> Self {
        let mut r = Registry::default();
        macro_rules! plain {
            ($($t:ty),* $(,)?) => { $(
                r.add::<$t>();
                r.add::<Vec<$t>>();
                r.add::<Option<$t>>();
            )* };
        }
        plain!(bool, char, String, i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize, f32, f64);
        plain!(serde_json::Value);
        r.add::<()>();
        r.add::<Vec<Vec<f32>>>();
        r.add::<Vec<Vec<f64>>>();
        r.add::<Vec<Vec<String>>>();
        r.add::<Vec<(String, String)>>();
        r.add::<HashMap<String, String>>();
        r.add::<HashMap<String, serde_json::Value>>();
        r.add::<HashMap<String, i64>>();
        r.add::<HashMap<String, f64>>();
        r.add::<BTreeMap<String, String>>();
        r.add::<BTreeMap<String, serde_json::Value>>();
        r.add::<(String, String)>();
        r.insert::<&'static str>(Codec {
            name: type_name::<&'static str>(),
            encode: encode_as::<&'static str>,
            decode: decode_static_str,
        });
        r
    }
}

fn registry() -> &'static RwLock<Registry> {
    static REGISTRY: OnceLock<RwLock<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(|| RwLock::new(Registry::with_plain_types()))
}

/// Lets values of type `T` be checkpointed where their type is erased: in a
/// [`SharedStore`], and as the `exec` result of a node of a runtime `Flow`.
/// Plain types (`bool`, numbers, `String`, `serde_json::Value`, and vectors,
/// options and string maps of those) are registered from the start.
///
/// `T` is stored as JSON under its type name; loading it back builds a `T`
/// with its `Deserialize` impl and nothing else.
///
/// ```
/// #[derive(Clone, serde::Serialize, serde::Deserialize)]
/// struct Ticket { id: u32, title: String }
///
/// minllm::durable::register::<Ticket>();
/// ```
pub fn register<T: Serialize + DeserializeOwned + Send + Sync + 'static>() {
    registry().write().add::<T>();
}

fn codec_of(id: TypeId) -> Option<Codec> {
    registry().read().by_type.get(&id).copied()
}

/// Why a value cannot go into a checkpoint, for the error that names it.
fn unregistered(name: &str) -> String {
    format!(
        "`{name}` is not a plain type: derive serde's Serialize and Deserialize for it and call \
         `minllm::durable::register::<{name}>()` before the run"
    )
}

/// A value of a known type as JSON bytes.
pub(crate) fn encode_value<T: Send + 'static>(value: &T) -> Result<Vec<u8>, String> {
    let codec = codec_of(TypeId::of::<T>()).ok_or_else(|| unregistered(type_name::<T>()))?;
    let json = (codec.encode)(value)?;
    serde_json::to_vec(&json).map_err(|e| e.to_string())
}

/// A value of a known type from the bytes [`encode_value`] made.
pub(crate) fn decode_value<T: Send + 'static>(bytes: &[u8]) -> Result<T, String> {
    let codec = codec_of(TypeId::of::<T>()).ok_or_else(|| unregistered(type_name::<T>()))?;
    let json: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let any: Box<dyn Any> = (codec.decode)(json)?;
    any.downcast::<T>().map(|b| *b).map_err(|_| format!("the registered decoder of `{}` made another type", codec.name))
}

/// A store that can go into a checkpoint, field by field (a field that did
/// not change since the last checkpoint is not written again).
///
/// Every type with serde's `Serialize` and `Deserialize` is one (a struct's
/// fields are its fields); so is [`SharedStore`], whose values must be of
/// [registered](register) types.
#[diagnostic::on_unimplemented(
    message = "the store `{Self}` cannot be checkpointed",
    label = "a checkpointed run saves this store at every step",
    note = "derive serde's `Serialize` and `Deserialize` for `{Self}` (`#[derive(serde::Serialize, serde::Deserialize)]`), or use `SharedStore`"
)]
pub trait DurableStore {
    /// The store's fields as JSON bytes; an error names the field and why.
    fn save_fields(&self) -> Result<Vec<(String, Vec<u8>)>, String>;
    /// Replaces the store's content with `fields`.
    fn load_fields(&mut self, fields: Vec<(String, Vec<u8>)>) -> Result<(), String>;
}

/// The field name of a store that is not a map or struct.
const WHOLE: &str = "";

impl<T: Serialize + DeserializeOwned> DurableStore for T {
    fn save_fields(&self) -> Result<Vec<(String, Vec<u8>)>, String> {
        match serde_json::to_value(self).map_err(|e| format!("the store cannot be serialized: {e}"))? {
            serde_json::Value::Object(map) => map
                .into_iter()
                .map(|(k, v)| serde_json::to_vec(&v).map(|b| (k, b)).map_err(|e| e.to_string()))
                .collect(),
            other => Ok(vec![(WHOLE.to_owned(), serde_json::to_vec(&other).map_err(|e| e.to_string())?)]),
        }
    }

    fn load_fields(&mut self, fields: Vec<(String, Vec<u8>)>) -> Result<(), String> {
        let value = if fields.len() == 1 && fields[0].0 == WHOLE {
            serde_json::from_slice(&fields[0].1).map_err(|e| e.to_string())?
        } else {
            let mut map = serde_json::Map::new();
            for (k, v) in fields {
                let value = serde_json::from_slice(&v).map_err(|e| format!("field `{k}`: {e}"))?;
                map.insert(k, value);
            }
            serde_json::Value::Object(map)
        };
        *self =
            serde_json::from_value(value).map_err(|e| format!("the checkpointed store does not fit its type: {e}"))?;
        Ok(())
    }
}

impl DurableStore for SharedStore {
    fn save_fields(&self) -> Result<Vec<(String, Vec<u8>)>, String> {
        let mut fields = Vec::new();
        let mut problem = None;
        self.for_each_value(|key, value, name| {
            if problem.is_some() {
                return;
            }
            let encoded = codec_of(value.type_id())
                .ok_or_else(|| unregistered(name))
                .and_then(|codec| Ok((codec.name, (codec.encode)(value)?)));
            match encoded.and_then(|(ty, v)| {
                serde_json::to_vec(&serde_json::json!({ "type": ty, "value": v })).map_err(|e| e.to_string())
            }) {
                Ok(bytes) => fields.push((key.to_owned(), bytes)),
                Err(why) => problem = Some(format!("store key `{key}`: {why}")),
            }
        });
        match problem {
            Some(why) => Err(why),
            None => {
                fields.sort_by(|a, b| a.0.cmp(&b.0));
                Ok(fields)
            }
        }
    }

    fn load_fields(&mut self, fields: Vec<(String, Vec<u8>)>) -> Result<(), String> {
        let mut values = Vec::with_capacity(fields.len());
        for (key, bytes) in fields {
            let mut tagged: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| format!("store key `{key}`: {e}"))?;
            let name = tagged.get("type").and_then(|t| t.as_str()).unwrap_or_default().to_owned();
            let codec = registry()
                .read()
                .by_name
                .get(name.as_str())
                .copied()
                .ok_or_else(|| format!("store key `{key}`: {}", unregistered(&name)))?;
            let value = (codec.decode)(tagged["value"].take()).map_err(|e| format!("store key `{key}`: {e}"))?;
            values.push((key, value, codec.name));
        }
        self.replace_all(values);
        Ok(())
    }
}

/// An `exec` result as recorded: how many interrupt answers the `exec` took
/// (so that a replay skips them), then the value's bytes.
pub(crate) struct ExecRecord;

impl ExecRecord {
    /// The record of a value that took `taken` answers.
    pub(crate) fn write(taken: usize, value: &[u8]) -> Vec<u8> {
        let mut record = Vec::with_capacity(value.len() + 8);
        record.extend_from_slice(&(taken as u64).to_le_bytes());
        record.extend_from_slice(value);
        record
    }

    /// The answers taken and the value's bytes.
    pub(crate) fn read(record: &[u8]) -> Result<(usize, &[u8]), String> {
        let (taken, value) = record
            .split_first_chunk::<8>()
            .ok_or_else(|| format!("a recorded exec result of {} bytes is too short", record.len()))?;
        let taken = usize::try_from(u64::from_le_bytes(*taken)).map_err(|e| e.to_string())?;
        Ok((taken, value))
    }
}
