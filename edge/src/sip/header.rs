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

            fn from_long_name(name: &[u8]) -> HeaderKind {
                $(
                    if name.len() == $name.len() && name.eq_ignore_ascii_case($name.as_bytes()) {
                        return HeaderKind::$kind;
                    }
                )*
                HeaderKind::Other
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

    fn from_compact(c: u8) -> HeaderKind {
        Self::ALL
            .iter()
            .copied()
            .find(|k| k.compact() == Some(c))
            .unwrap_or(HeaderKind::Other)
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
    fn every_compact_form_maps_back() {
        for &kind in HeaderKind::ALL {
            if let Some(c) = kind.compact() {
                assert_eq!(HeaderKind::from_name(&[c]), kind);
                assert_eq!(HeaderKind::from_name(kind.name().as_bytes()), kind);
            }
        }
    }
}
