//! Random identifiers: spaces and agreements.

use std::fmt;

use rand_core::CryptoRngCore;

use crate::encoding::DecodeError;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 16]);

        impl $name {
            /// A fresh random id (128 bits).
            pub fn random(rng: &mut impl CryptoRngCore) -> Self {
                let mut b = [0u8; 16];
                rng.fill_bytes(&mut b);
                Self(b)
            }

            /// Lower-case hex, 32 characters.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// Parses 32 hex characters.
            pub fn from_hex(s: &str) -> Result<Self, DecodeError> {
                let mut b = [0u8; 16];
                hex::decode_to_slice(s, &mut b).map_err(|_| DecodeError::Invalid(stringify!($name)))?;
                Ok(Self(b))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_hex())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
    };
}

id_type!(
    /// A couple's shared space on one relay: 128 random bits.
    SpaceId
);
id_type!(
    /// An agreement (all versions of it share the id).
    AgreementId
);
