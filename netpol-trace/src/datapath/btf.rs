//! A minimal reader of the kernel's BTF (`/sys/kernel/btf/vmlinux`): struct member offsets
//! and enum values, which is all the loader needs. aya-ebpf has no CO-RE field relocations,
//! so offsets are read here and handed to the programs as load-time globals.

use std::{collections::HashMap, path::Path};

/// Where the running kernel exposes its BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

const BTF_MAGIC: u16 = 0xeb9f;
const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

/// Errors reading BTF.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    /// The file could not be read.
    #[error("cannot read BTF at {path}: {source} (the kernel needs CONFIG_DEBUG_INFO_BTF=y)")]
    Read {
        /// The path tried.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The data is not BTF or is truncated.
    #[error("malformed BTF: {0}")]
    Malformed(&'static str),
    /// A type is not in the BTF.
    #[error("kernel BTF has no {kind} {name}")]
    NoType {
        /// "struct" or "enum".
        kind: &'static str,
        /// The name looked for.
        name: String,
    },
    /// A member is not in the struct.
    #[error("kernel BTF: struct {ty} has no member {member}")]
    NoMember {
        /// The struct.
        ty: String,
        /// The member looked for.
        member: String,
    },
}

/// A member of a struct or union.
#[derive(Debug, Clone)]
struct Member {
    name: String,
    type_id: u32,
    bit_offset: u32,
}

#[derive(Debug, Clone)]
enum Type {
    Composite {
        name: String,
        members: Vec<Member>,
    },
    Enum {
        name: String,
        values: Vec<(String, i64)>,
    },
    /// Typedef, const, volatile...: a name for another type.
    Alias {
        target: u32,
    },
    Other,
}

/// Parsed BTF: the types that matter here, by id.
#[derive(Debug)]
pub struct Btf {
    types: Vec<Type>,
    by_name: HashMap<String, Vec<u32>>,
}

impl Btf {
    /// Reads and parses the running kernel's BTF.
    pub fn from_sys_fs() -> Result<Self, BtfError> {
        Self::from_file(Path::new(VMLINUX_BTF))
    }

    /// Reads and parses a BTF file.
    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        let data = std::fs::read(path)
            .map_err(|source| BtfError::Read { path: path.display().to_string(), source })?;
        Self::parse(&data)
    }

    /// Parses raw BTF bytes (little or big endian).
    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        if data.len() < 24 {
            return Err(BtfError::Malformed("shorter than its header"));
        }
        let le = u16::from_le_bytes([data[0], data[1]]) == BTF_MAGIC;
        if !le && u16::from_be_bytes([data[0], data[1]]) != BTF_MAGIC {
            return Err(BtfError::Malformed("bad magic"));
        }
        let rd = |off: usize| -> Result<u32, BtfError> {
            let b: [u8; 4] = data
                .get(off..off + 4)
                .and_then(|s| s.try_into().ok())
                .ok_or(BtfError::Malformed("truncated"))?;
            Ok(if le { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) })
        };
        let hdr_len = rd(4)? as usize;
        let type_off = rd(8)? as usize;
        let type_len = rd(12)? as usize;
        let str_off = rd(16)? as usize;
        let str_len = rd(20)? as usize;
        let types_start = hdr_len + type_off;
        let strs_start = hdr_len + str_off;
        let strings = data
            .get(strs_start..strs_start + str_len)
            .ok_or(BtfError::Malformed("string section out of bounds"))?;
        let name = |off: u32| -> String {
            let s = strings.get(off as usize..).unwrap_or_default();
            let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
            String::from_utf8_lossy(&s[..end]).into_owned()
        };

        // Type id 0 is "void".
        let mut types = vec![Type::Other];
        let mut pos = types_start;
        let end = types_start + type_len;
        if end > data.len() {
            return Err(BtfError::Malformed("type section out of bounds"));
        }
        while pos < end {
            let name_off = rd(pos)?;
            let info = rd(pos + 4)?;
            let size_or_type = rd(pos + 8)?;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            pos += 12;
            let ty = match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => {
                    pos += 4;
                    Type::Other
                }
                KIND_ARRAY => {
                    pos += 12;
                    Type::Other
                }
                KIND_STRUCT | KIND_UNION => {
                    let mut members = Vec::with_capacity(vlen);
                    for _ in 0..vlen {
                        let offset = rd(pos + 8)?;
                        members.push(Member {
                            name: name(rd(pos)?),
                            type_id: rd(pos + 4)?,
                            bit_offset: if kind_flag { offset & 0x00ff_ffff } else { offset },
                        });
                        pos += 12;
                    }
                    Type::Composite { name: name(name_off), members }
                }
                KIND_ENUM => {
                    let mut values = Vec::with_capacity(vlen);
                    for _ in 0..vlen {
                        let v = rd(pos + 4)? as i32 as i64;
                        values.push((name(rd(pos)?), v));
                        pos += 8;
                    }
                    Type::Enum { name: name(name_off), values }
                }
                KIND_ENUM64 => {
                    let mut values = Vec::with_capacity(vlen);
                    for _ in 0..vlen {
                        let v = (u64::from(rd(pos + 8)?) << 32 | u64::from(rd(pos + 4)?)) as i64;
                        values.push((name(rd(pos)?), v));
                        pos += 12;
                    }
                    Type::Enum { name: name(name_off), values }
                }
                KIND_FUNC_PROTO => {
                    pos += 8 * vlen;
                    Type::Other
                }
                KIND_DATASEC => {
                    pos += 12 * vlen;
                    Type::Other
                }
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    Type::Alias { target: size_or_type }
                }
                KIND_PTR => Type::Other,
                _ => Type::Other,
            };
            types.push(ty);
        }
        let mut by_name: HashMap<String, Vec<u32>> = HashMap::new();
        for (id, ty) in types.iter().enumerate() {
            if let Type::Composite { name, .. } | Type::Enum { name, .. } = ty
                && !name.is_empty()
            {
                by_name.entry(name.clone()).or_default().push(id as u32);
            }
        }
        Ok(Self { types, by_name })
    }

    fn resolve(&self, mut id: u32) -> Option<&Type> {
        for _ in 0..32 {
            match self.types.get(id as usize)? {
                Type::Alias { target } => id = *target,
                ty => return Some(ty),
            }
        }
        None
    }

    fn find_struct(&self, name: &str) -> Option<u32> {
        self.by_name.get(name)?.iter().copied().find(|&id| {
            matches!(&self.types[id as usize], Type::Composite { members, .. } if !members.is_empty())
        })
    }

    /// Byte offset of `path` (`["nd_net", "net"]`) inside struct `ty`, looking through
    /// anonymous structs and unions the way C does.
    pub fn member_offset(&self, ty: &str, path: &[&str]) -> Result<u32, BtfError> {
        let mut id = self
            .find_struct(ty)
            .ok_or_else(|| BtfError::NoType { kind: "struct", name: ty.to_string() })?;
        let mut total_bits = 0u32;
        let mut owner = ty.to_string();
        for member in path {
            let (bits, next) = self.find_member(id, member, 0).ok_or_else(|| {
                BtfError::NoMember { ty: owner.clone(), member: (*member).to_string() }
            })?;
            total_bits += bits;
            id = next;
            owner = (*member).to_string();
        }
        Ok(total_bits / 8)
    }

    fn find_member(&self, id: u32, wanted: &str, depth: u32) -> Option<(u32, u32)> {
        if depth > 8 {
            return None;
        }
        let Type::Composite { members, .. } = self.resolve(id)? else { return None };
        for m in members {
            if m.name == wanted {
                return Some((m.bit_offset, m.type_id));
            }
        }
        for m in members.iter().filter(|m| m.name.is_empty()) {
            if let Some((bits, ty)) = self.find_member(m.type_id, wanted, depth + 1) {
                return Some((m.bit_offset + bits, ty));
            }
        }
        None
    }

    /// Values of enum `name`: variant name → value.
    pub fn enum_values(&self, name: &str) -> Result<Vec<(String, i64)>, BtfError> {
        self.by_name
            .get(name)
            .into_iter()
            .flatten()
            .find_map(|&id| match &self.types[id as usize] {
                Type::Enum { values, .. } if !values.is_empty() => Some(values.clone()),
                _ => None,
            })
            .ok_or_else(|| BtfError::NoType { kind: "enum", name: name.to_string() })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds little-endian BTF from (kind, name, info-extra, size, payload words).
    #[derive(Default)]
    pub(crate) struct Builder {
        types: Vec<u8>,
        strings: Vec<u8>,
    }

    impl Builder {
        pub(crate) fn new() -> Self {
            Self { types: vec![], strings: vec![0] }
        }
        pub(crate) fn str(&mut self, s: &str) -> u32 {
            if s.is_empty() {
                return 0;
            }
            let off = self.strings.len() as u32;
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            off
        }
        fn word(&mut self, w: u32) {
            self.types.extend_from_slice(&w.to_le_bytes());
        }
        pub(crate) fn int(&mut self, name: &str, size: u32) {
            let n = self.str(name);
            self.word(n);
            self.word(KIND_INT << 24);
            self.word(size);
            self.word(size * 8);
        }
        pub(crate) fn ptr(&mut self, target: u32) {
            self.word(0);
            self.word(KIND_PTR << 24);
            self.word(target);
        }
        pub(crate) fn composite(
            &mut self,
            union: bool,
            name: &str,
            size: u32,
            members: &[(&str, u32, u32)],
        ) {
            let n = self.str(name);
            self.word(n);
            let kind = if union { KIND_UNION } else { KIND_STRUCT };
            self.word(kind << 24 | members.len() as u32);
            self.word(size);
            for (mname, ty, bits) in members {
                let m = self.str(mname);
                self.word(m);
                self.word(*ty);
                self.word(*bits);
            }
        }
        pub(crate) fn enumeration(&mut self, name: &str, values: &[(&str, i32)]) {
            let n = self.str(name);
            self.word(n);
            self.word(KIND_ENUM << 24 | values.len() as u32);
            self.word(4);
            for (vname, v) in values {
                let m = self.str(vname);
                self.word(m);
                self.word(*v as u32);
            }
        }
        pub(crate) fn build(self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&BTF_MAGIC.to_le_bytes());
            out.push(1);
            out.push(0);
            out.extend_from_slice(&24u32.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&(self.types.len() as u32).to_le_bytes());
            out.extend_from_slice(&(self.types.len() as u32).to_le_bytes());
            out.extend_from_slice(&(self.strings.len() as u32).to_le_bytes());
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }

    #[test]
    fn finds_members_through_anonymous_unions() {
        let mut b = Builder::new();
        b.int("int", 4); // 1
        b.ptr(1); // 2
        // 3: anonymous union { int *dev; int scratch; }
        b.composite(true, "", 8, &[("dev", 2, 0), ("scratch", 1, 0)]);
        // 4: anonymous struct { int *next; union(3) at 64 bits }
        b.composite(false, "", 16, &[("next", 2, 0), ("", 3, 64)]);
        // 5: struct sk_buff { anon struct(4) at 0; int len at 128; }
        b.composite(false, "sk_buff", 20, &[("", 4, 0), ("len", 1, 128)]);
        b.enumeration(
            "skb_drop_reason",
            &[("SKB_NOT_DROPPED_YET", 0), ("SKB_DROP_REASON_NETFILTER_DROP", 11)],
        );
        let btf = Btf::parse(&b.build()).unwrap();
        assert_eq!(btf.member_offset("sk_buff", &["dev"]).unwrap(), 8);
        assert_eq!(btf.member_offset("sk_buff", &["len"]).unwrap(), 16);
        let err = btf.member_offset("sk_buff", &["nope"]).unwrap_err().to_string();
        assert!(err.contains("struct sk_buff has no member nope"), "{err}");
        assert!(btf.member_offset("net_device", &["ifindex"]).is_err());
        let values = btf.enum_values("skb_drop_reason").unwrap();
        assert_eq!(values[1], ("SKB_DROP_REASON_NETFILTER_DROP".to_string(), 11));
    }

    #[test]
    fn rejects_garbage() {
        assert!(Btf::parse(b"not btf at all, clearly not").is_err());
        assert!(Btf::parse(&[0x9f, 0xeb]).is_err());
        let mut data = Builder::new().build();
        data[12] = 0xff; // type_len far beyond the data
        assert!(Btf::parse(&data).is_err());
    }

    /// Replayed-data tests above cover parsing; this one checks the real kernel.
    #[test]
    #[ignore = "needs root"]
    fn reads_the_running_kernel() {
        crate::lab::system::require_root();
        let btf = Btf::from_sys_fs().unwrap();
        let dev = btf.member_offset("sk_buff", &["dev"]).unwrap();
        let head = btf.member_offset("sk_buff", &["head"]).unwrap();
        assert!(head > dev, "head {head} should follow dev {dev}");
        assert!(btf.member_offset("net_device", &["ifindex"]).unwrap() > 0);
        let reasons = btf.enum_values("skb_drop_reason").unwrap();
        assert!(reasons.iter().any(|(n, _)| n == "SKB_DROP_REASON_NETFILTER_DROP"));
    }
}
