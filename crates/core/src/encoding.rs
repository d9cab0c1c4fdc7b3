//! Canonical binary encoding: big-endian integers, length-prefixed byte strings,
//! every length bounded. Decoding never panics and never allocates more than the
//! caller's bound allows.

use thiserror::Error;

/// Why some bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended before the value did.
    #[error("the data ended too early")]
    Truncated,
    /// A length prefix is larger than this field allows.
    #[error("a field is longer than {max} bytes")]
    TooLong {
        /// The bound that was exceeded.
        max: usize,
    },
    /// Bytes were left over after the value.
    #[error("unexpected bytes after the end of the data")]
    TrailingBytes,
    /// A tag or enum discriminant is not one this version knows.
    #[error("unknown {what} {value}")]
    UnknownTag {
        /// What was being decoded.
        what: &'static str,
        /// The value that was found.
        value: u64,
    },
    /// A format version this implementation does not speak.
    #[error("unsupported format version {0}")]
    UnsupportedVersion(u8),
    /// Text that is not UTF-8.
    #[error("text is not valid UTF-8")]
    InvalidUtf8,
    /// A field holds a value that is not allowed (e.g. a weak public key).
    #[error("invalid {0}")]
    Invalid(&'static str),
}

/// Appends canonical encodings to a byte vector.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty writer with room for `n` bytes.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            buf: Vec::with_capacity(n),
        }
    }

    /// Writes one byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    /// Writes a big-endian u16.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Writes a big-endian u32.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Writes a big-endian u64.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Writes bytes with no length prefix (fixed-size fields).
    pub fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }

    /// Writes a u32 length prefix followed by the bytes.
    ///
    /// # Panics
    /// Never for inputs this crate produces: every field is bounded far below 4 GiB.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        let len = u32::try_from(v.len()).unwrap_or(u32::MAX);
        self.u32(len);
        self.buf.extend_from_slice(v);
        self
    }

    /// Writes UTF-8 text with a u32 length prefix.
    pub fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }

    /// Writes 0 for `None`, or 1 followed by the value.
    pub fn opt<T>(&mut self, v: Option<T>, f: impl FnOnce(&mut Self, T)) -> &mut Self {
        match v {
            None => {
                self.u8(0);
            }
            Some(x) => {
                self.u8(1);
                f(self, x);
            }
        }
        self
    }

    /// The bytes written so far.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    /// The finished encoding.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads canonical encodings from a byte slice, with a bound on every length.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    /// How many bytes were read so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Takes exactly `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated);
        }
        let out = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// Takes a fixed-size array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// Reads one byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    /// Reads a big-endian u16.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    /// Reads a big-endian u32.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// Reads a big-endian u64.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// Reads a length-prefixed byte string of at most `max` bytes.
    pub fn bytes(&mut self, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(DecodeError::TooLong { max });
        }
        self.take(len)
    }

    /// Reads length-prefixed UTF-8 text of at most `max` bytes.
    pub fn str(&mut self, max: usize) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.bytes(max)?).map_err(|_| DecodeError::InvalidUtf8)
    }

    /// Reads an optional value written by [`Writer::opt`].
    pub fn opt<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => f(self).map(Some),
            v => Err(DecodeError::UnknownTag {
                what: "option tag",
                value: u64::from(v),
            }),
        }
    }

    /// Reads a u32 item count and checks it against `max` before anything is allocated.
    pub fn count(&mut self, max: usize) -> Result<usize, DecodeError> {
        let n = self.u32()? as usize;
        if n > max {
            return Err(DecodeError::TooLong { max });
        }
        Ok(n)
    }

    /// Fails unless every byte was consumed.
    pub fn finish(self) -> Result<(), DecodeError> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bounds() {
        let mut w = Writer::new();
        w.u8(7)
            .u16(300)
            .u32(70000)
            .u64(1 << 40)
            .bytes(b"abc")
            .str("héllo");
        w.opt(Some(5u32), |w, v| {
            w.u32(v);
        });
        let data = w.finish();
        let mut r = Reader::new(&data);
        assert_eq!(r.u8(), Ok(7));
        assert_eq!(r.u16(), Ok(300));
        assert_eq!(r.u32(), Ok(70000));
        assert_eq!(r.u64(), Ok(1 << 40));
        assert_eq!(r.bytes(3), Ok(&b"abc"[..]));
        assert_eq!(r.str(100), Ok("héllo"));
        assert_eq!(r.opt(|r| r.u32()), Ok(Some(5)));
        assert_eq!(r.finish(), Ok(()));

        let mut r = Reader::new(&data[..3]);
        r.u8().ok();
        assert_eq!(r.u32(), Err(DecodeError::Truncated));

        let mut w = Writer::new();
        w.bytes(&[0u8; 10]);
        let data = w.finish();
        assert_eq!(
            Reader::new(&data).bytes(9),
            Err(DecodeError::TooLong { max: 9 })
        );
        // A huge length prefix on a tiny input is refused, not allocated.
        let evil = [0xff, 0xff, 0xff, 0xff, 1];
        assert_eq!(
            Reader::new(&evil).bytes(usize::MAX),
            Err(DecodeError::Truncated)
        );
    }
}
