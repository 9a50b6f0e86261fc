//! Header names: the kinds a proxy, registrar and balancer read, their compact
//! forms (RFC 3261 7.3.3 and the registry of IANA), and case-insensitive matching.

use std::fmt;

macro_rules! header_kinds {
    ($( $(#[$doc:meta])* $kind:ident => $name:literal $(, $compact:literal)? ;)*) => {
        /// A header field name the codec knows, whatever its case or compact form.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum HeaderKind {
            $( $(#[$doc])* $kind, )*
            /// Any other header; compare its name with [`Header::name`].
            Other,
        }

        impl HeaderKind {
            /// Every kind, `Other` last.
            pub const ALL: &'static [HeaderKind] = &[$(HeaderKind::$kind,)* HeaderKind::Other];
            /// Number of kinds, `Other` included: the size of per-kind tables.
            pub const COUNT: usize = Self::ALL.len();

            /// The canonical (long) name, as the editor writes it.
            pub const fn name(self) -> &'static str {
                match self {
                    $( HeaderKind::$kind => $name, )*
                    HeaderKind::Other => "Other",
                }
            }

            /// The compact form of RFC 3261 7.3.3 and its extensions, if any.
            pub const fn compact(self) -> Option<u8> {
                match self {
                    $( $( HeaderKind::$kind => Some($compact), )? )*
                    _ => None,
                }
            }
        }
    };
}

header_kinds! {
    /// `Via` (`v`).
    Via => "Via", b'v';
    /// `From` (`f`).
    From => "From", b'f';
    /// `To` (`t`).
    To => "To", b't';
    /// `Call-ID` (`i`).
    CallId => "Call-ID", b'i';
    /// `CSeq`.
    CSeq => "CSeq";
    /// `Max-Forwards`.
    MaxForwards => "Max-Forwards";
    /// `Route`.
    Route => "Route";
    /// `Record-Route`.
    RecordRoute => "Record-Route";
    /// `Contact` (`m`).
    Contact => "Contact", b'm';
    /// `Content-Length` (`l`).
    ContentLength => "Content-Length", b'l';
    /// `Content-Type` (`c`).
    ContentType => "Content-Type", b'c';
    /// `Content-Encoding` (`e`).
    ContentEncoding => "Content-Encoding", b'e';
    /// `Expires`.
    Expires => "Expires";
    /// `Authorization`.
    Authorization => "Authorization";
    /// `Proxy-Authorization`.
    ProxyAuthorization => "Proxy-Authorization";
    /// `WWW-Authenticate`.
    WwwAuthenticate => "WWW-Authenticate";
    /// `Proxy-Authenticate`.
    ProxyAuthenticate => "Proxy-Authenticate";
    /// `Supported` (`k`).
    Supported => "Supported", b'k';
    /// `Require`.
    Require => "Require";
    /// `Proxy-Require`.
    ProxyRequire => "Proxy-Require";
    /// `Allow`.
    Allow => "Allow";
    /// `User-Agent`.
    UserAgent => "User-Agent";
    /// `Subject` (`s`).
    Subject => "Subject", b's';
    /// `Event` (`o`), RFC 6665.
    Event => "Event", b'o';
    /// `Allow-Events` (`u`), RFC 6665.
    AllowEvents => "Allow-Events", b'u';
    /// `Refer-To` (`r`), RFC 3515.
    ReferTo => "Refer-To", b'r';
    /// `Referred-By` (`b`), RFC 3892.
    ReferredBy => "Referred-By", b'b';
    /// `Session-Expires` (`x`), RFC 4028.
    SessionExpires => "Session-Expires", b'x';
    /// `Identity` (`y`), RFC 8224.
    Identity => "Identity", b'y';
    /// `Accept-Contact` (`a`), RFC 3841.
    AcceptContact => "Accept-Contact", b'a';
    /// `Reject-Contact` (`j`), RFC 3841.
    RejectContact => "Reject-Contact", b'j';
    /// `Request-Disposition` (`d`), RFC 3841.
    RequestDisposition => "Request-Disposition", b'd';
    /// `Identity-Info` (`n`), RFC 4474.
    IdentityInfo => "Identity-Info", b'n';
}

impl HeaderKind {
    /// The kind of a header named `name` (long or compact form, any case).
    pub fn from_name(name: &[u8]) -> HeaderKind {
        if let [c] = name {
            return Self::from_compact(c.to_ascii_lowercase());
        }
        Self::from_long_name(name)
    }

    /// The kind whose long name is `name`: a hash of the length and the first and
    /// last letters picks a bucket of one or two names to compare.
    fn from_long_name(name: &[u8]) -> HeaderKind {
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return HeaderKind::Other;
        }
        let mut padded = [0u8; MAX_NAME_LEN];
        padded[..name.len()].copy_from_slice(name);
        let words = [word(&padded, 0), word(&padded, 8), word(&padded, 16)];
        for &slot in &NAME_BUCKETS[name_hash(name)] {
            if slot == 0 {
                break;
            }
            let index = usize::from(slot - 1);
            let lower = &LOWER_NAMES[index];
            // Eight bytes a compare: the mask lowers the letters only, so other
            // bytes must match exactly.
            let equal = (0..3).all(|k| words[k] | lower.mask[k] == lower.words[k]);
            if name.len() == lower.len && equal {
                return HeaderKind::ALL[index];
            }
        }
        HeaderKind::Other
    }

    fn from_compact(c: u8) -> HeaderKind {
        match COMPACT[usize::from(c)] {
            0 => HeaderKind::Other,
            slot => HeaderKind::ALL[usize::from(slot - 1)],
        }
    }

    /// Headers that RFC 3261 allows once a message; a second one is an error.
    pub const fn is_singleton(self) -> bool {
        matches!(
            self,
            HeaderKind::From
                | HeaderKind::To
                | HeaderKind::CallId
                | HeaderKind::CSeq
                | HeaderKind::MaxForwards
                | HeaderKind::ContentLength
        )
    }

    /// Does `name` (as received) name this kind? For `Other` it never does.
    pub fn matches(self, name: &[u8]) -> bool {
        self != HeaderKind::Other && HeaderKind::from_name(name) == self
    }
}

/// Bucket of a non-empty header name; the same for names equal but for ASCII case.
const fn name_hash(name: &[u8]) -> usize {
    let n = name.len();
    (n + (name[0] | 0x20) as usize + 5 * (name[n - 1] | 0x20) as usize) % NAME_BUCKET_COUNT
}

const NAME_BUCKET_COUNT: usize = 64;

/// Long names by [`name_hash`]: each bucket holds `index in ALL + 1` of up to four
/// kinds, then zeros. Built at compile time (a fifth name in a bucket fails the build).
static NAME_BUCKETS: [[u8; 4]; NAME_BUCKET_COUNT] = {
    let mut buckets = [[0u8; 4]; NAME_BUCKET_COUNT];
    let mut k = 0;
    while k < HeaderKind::COUNT - 1 {
        let bucket = name_hash(HeaderKind::ALL[k].name().as_bytes());
        let mut slot = 0;
        while buckets[bucket][slot] != 0 {
            slot += 1;
        }
        buckets[bucket][slot] = k as u8 + 1;
        k += 1;
    }
    buckets
};

/// A long name in lower case as little-endian words, zero-padded, with the mask
/// that lowers a received name at the letters of this one (`0x20` at letters).
struct LowerName {
    words: [u64; 3],
    mask: [u64; 3],
    len: usize,
}

/// Longest long name (a longer one fails the build).
const MAX_NAME_LEN: usize = 24;

/// Bytes `i..i + 8` of `b` as a little-endian word.
#[inline]
fn word(b: &[u8; MAX_NAME_LEN], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(w)
}

/// [`HeaderKind::name`] of each kind in `ALL` order, lowered at compile time.
static LOWER_NAMES: [LowerName; HeaderKind::COUNT] = {
    let mut names = [const {
        LowerName {
            words: [0; 3],
            mask: [0; 3],
            len: 0,
        }
    }; HeaderKind::COUNT];
    let mut k = 0;
    while k < HeaderKind::COUNT {
        let name = HeaderKind::ALL[k].name().as_bytes();
        assert!(name.len() <= MAX_NAME_LEN, "header name too long");
        let mut i = 0;
        while i < name.len() {
            let b = name[i];
            let shift = 8 * (i % 8);
            names[k].words[i / 8] |= (b.to_ascii_lowercase() as u64) << shift;
            if b.is_ascii_alphabetic() {
                names[k].mask[i / 8] |= 0x20 << shift;
            }
            i += 1;
        }
        names[k].len = name.len();
        k += 1;
    }
    names
};

/// Compact forms: `index in ALL + 1` of the first kind with that letter, else 0.
static COMPACT: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut k = 0;
    while k < HeaderKind::COUNT {
        if let Some(c) = HeaderKind::ALL[k].compact() {
            if table[c as usize] == 0 {
                table[c as usize] = k as u8 + 1;
            }
        }
        k += 1;
    }
    table
};

impl fmt::Display for HeaderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One header field of a parsed message: its name as received and its value
/// without the surrounding whitespace (folded values keep their inner CRLFs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    /// What the name means.
    pub kind: HeaderKind,
    /// The name as received (any case, maybe compact).
    pub name: &'a [u8],
    /// The value as received, trimmed.
    pub value: &'a [u8],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_case_insensitive_and_compact() {
        assert_eq!(
            HeaderKind::from_name(b"MaX-fOrWaRdS"),
            HeaderKind::MaxForwards
        );
        assert_eq!(HeaderKind::from_name(b"v"), HeaderKind::Via);
        assert_eq!(HeaderKind::from_name(b"V"), HeaderKind::Via);
        assert_eq!(HeaderKind::from_name(b"l"), HeaderKind::ContentLength);
        assert_eq!(HeaderKind::from_name(b"i"), HeaderKind::CallId);
        assert_eq!(HeaderKind::from_name(b"C%6Fntact"), HeaderKind::Other);
        assert_eq!(HeaderKind::from_name(b"q"), HeaderKind::Other);
    }

    #[test]
    fn every_long_name_maps_back_in_any_case() {
        for &kind in &HeaderKind::ALL[..HeaderKind::COUNT - 1] {
            let name = kind.name();
            assert_eq!(HeaderKind::from_name(name.as_bytes()), kind);
            assert_eq!(HeaderKind::from_name(name.to_uppercase().as_bytes()), kind);
            assert_eq!(HeaderKind::from_name(name.to_lowercase().as_bytes()), kind);
            let longer = format!("{name}x");
            assert_eq!(HeaderKind::from_name(longer.as_bytes()), HeaderKind::Other);
        }
        assert_eq!(HeaderKind::from_name(b""), HeaderKind::Other);
        assert_eq!(HeaderKind::from_name(b"X-Other"), HeaderKind::Other);
        assert_eq!(HeaderKind::from_name(b"Callid"), HeaderKind::Other);
        // CR is `-` with bit 5 clear: only letters compare without case.
        assert_eq!(HeaderKind::from_name(b"Call\rID"), HeaderKind::Other);
        assert_eq!(HeaderKind::from_name(b"Via\0"), HeaderKind::Other);
        assert_eq!(
            HeaderKind::from_name(b"Proxy-Authorization-Extra-Long"),
            HeaderKind::Other
        );
    }

    #[test]
    fn every_compact_form_maps_back() {
        for &kind in HeaderKind::ALL {
            if let Some(c) = kind.compact() {
                assert_eq!(HeaderKind::from_name(&[c]), kind);
                assert_eq!(HeaderKind::from_name(kind.name().as_bytes()), kind);
            }
        }
    }
}
