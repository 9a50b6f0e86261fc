//! Zero-copy views of RTP and RTCP packets (RFC 3550 sections 5 and 6) and the
//! rtcp-mux demultiplexing rule (RFC 5761 section 4).
//!
//! A view borrows the received datagram and reads each field in place with
//! `from_be_bytes`: nothing is copied or allocated, so building one for every
//! forwarded packet costs a few comparisons. `parse` checks every length before
//! a view exists, so the accessors never read out of bounds; the read helpers
//! still go through `get` and fall back to zero, so even a logic error here
//! cannot panic on peer input.

use thiserror::Error;

/// The only RTP/RTCP version in use (RFC 3550 section 5.1).
pub const VERSION: u8 = 2;

/// Length of the fixed RTP header, before the CSRC list and the extension.
pub const RTP_FIXED_HEADER_LEN_BYTES: usize = 12;

/// Length of the common RTCP header (V, P, count, packet type, length).
pub const RTCP_HEADER_LEN_BYTES: usize = 4;

/// Length of an RTP header extension's own header (profile and length).
const EXTENSION_HEADER_LEN_BYTES: usize = 4;

/// Length of the sender info block of an SR (NTP, RTP timestamp, counts).
const SENDER_INFO_LEN_BYTES: usize = 20;

/// Length of one reception report block of an SR or RR.
const REPORT_BLOCK_LEN_BYTES: usize = 24;

/// Length of the sender SSRC that follows the header of an SR or RR.
const SSRC_LEN_BYTES: usize = 4;

/// Reads a big-endian `u16` at `at`; zero if out of bounds (never happens
/// after `parse`, see the module comment).
fn be16(buf: &[u8], at: usize) -> u16 {
    buf.get(at..)
        .and_then(<[u8]>::first_chunk::<2>)
        .map_or(0, |b| u16::from_be_bytes(*b))
}

/// Reads a big-endian `u32` at `at`; zero if out of bounds.
fn be32(buf: &[u8], at: usize) -> u32 {
    buf.get(at..)
        .and_then(<[u8]>::first_chunk::<4>)
        .map_or(0, |b| u32::from_be_bytes(*b))
}

/// Reads a big-endian `u64` at `at`; zero if out of bounds.
fn be64(buf: &[u8], at: usize) -> u64 {
    buf.get(at..)
        .and_then(<[u8]>::first_chunk::<8>)
        .map_or(0, |b| u64::from_be_bytes(*b))
}

/// Reads one byte at `at`; zero if out of bounds.
fn byte(buf: &[u8], at: usize) -> u8 {
    buf.get(at).copied().unwrap_or(0)
}

/// Why a datagram is not a valid RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RtpError {
    /// Shorter than the 12-byte fixed header.
    #[error("RTP packet of {len_bytes} bytes is shorter than the 12-byte header")]
    TooShort {
        /// Length of the datagram.
        len_bytes: usize,
    },
    /// The version field is not 2.
    #[error("RTP version {version}, expected 2")]
    BadVersion {
        /// The version found.
        version: u8,
    },
    /// The CSRC list announced by CC does not fit in the datagram.
    #[error("{csrc_count} CSRCs overrun the RTP packet of {len_bytes} bytes")]
    CsrcOverrun {
        /// The CSRC count (CC) of the header.
        csrc_count: u8,
        /// Length of the datagram.
        len_bytes: usize,
    },
    /// The X bit is set but the extension header or its data does not fit.
    #[error("RTP header extension needs {needed_bytes} bytes, packet has {len_bytes}")]
    ExtensionOverrun {
        /// Bytes the header would need up to the end of the extension.
        needed_bytes: usize,
        /// Length of the datagram.
        len_bytes: usize,
    },
    /// The P bit is set but the padding count is zero (it counts itself) or
    /// larger than what follows the header.
    #[error("RTP padding of {padding_bytes} bytes, {available_bytes} bytes follow the header")]
    BadPadding {
        /// The padding count, the last byte of the datagram.
        padding_bytes: u8,
        /// Bytes after the header (payload plus padding).
        available_bytes: usize,
    },
}

/// A validated RTP packet, borrowed from the datagram it arrived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpView<'a> {
    /// The whole datagram.
    buf: &'a [u8],
    /// Fixed header, CSRCs and extension: where the payload starts.
    header_len_bytes: usize,
    /// Padding at the end, including the count byte itself.
    padding_len_bytes: usize,
}

impl<'a> RtpView<'a> {
    /// Parses and validates an RTP packet: version 2, the fixed header, the
    /// CSRC list, the header extension (if X) and the padding count (if P).
    pub fn parse(buf: &'a [u8]) -> Result<Self, RtpError> {
        let header_len_bytes = header_len(buf)?;
        let padding_len_bytes = padding_len(buf, header_len_bytes)?;
        Ok(Self {
            buf,
            header_len_bytes,
            padding_len_bytes,
        })
    }

    /// Like [`RtpView::parse`], but leaves the padding uninterpreted: for
    /// SRTP, where the padding count is encrypted and the last bytes are the
    /// authentication tag, so a P bit cannot be checked by a relay.
    /// [`RtpView::payload`] then runs to the end of the datagram.
    pub fn parse_header(buf: &'a [u8]) -> Result<Self, RtpError> {
        let header_len_bytes = header_len(buf)?;
        Ok(Self {
            buf,
            header_len_bytes,
            padding_len_bytes: 0,
        })
    }

    /// The whole datagram the view was parsed from.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// Length of the whole datagram.
    pub fn len_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Length of the header: fixed part, CSRCs and extension.
    pub fn header_len_bytes(&self) -> usize {
        self.header_len_bytes
    }

    /// Length of the padding, count byte included (0 without P, and always 0
    /// after [`RtpView::parse_header`]).
    pub fn padding_len_bytes(&self) -> usize {
        self.padding_len_bytes
    }

    /// The version field (always 2 in a parsed view).
    pub fn version(&self) -> u8 {
        byte(self.buf, 0) >> 6
    }

    /// The P bit: the packet ends with padding.
    pub fn has_padding(&self) -> bool {
        byte(self.buf, 0) & 0x20 != 0
    }

    /// The X bit: a header extension follows the CSRC list.
    pub fn has_extension(&self) -> bool {
        byte(self.buf, 0) & 0x10 != 0
    }

    /// The CSRC count (CC), 0 to 15.
    pub fn csrc_count(&self) -> u8 {
        byte(self.buf, 0) & 0x0f
    }

    /// The M bit (profile-defined; a talkspurt start for audio).
    pub fn marker(&self) -> bool {
        byte(self.buf, 1) & 0x80 != 0
    }

    /// The payload type, 0 to 127.
    pub fn payload_type(&self) -> u8 {
        byte(self.buf, 1) & 0x7f
    }

    /// The 16-bit sequence number.
    pub fn sequence_number(&self) -> u16 {
        be16(self.buf, 2)
    }

    /// The RTP timestamp, in units of the payload's clock rate.
    pub fn timestamp(&self) -> u32 {
        be32(self.buf, 4)
    }

    /// The synchronization source.
    pub fn ssrc(&self) -> u32 {
        be32(self.buf, 8)
    }

    /// The contributing sources, in header order.
    pub fn csrcs(&self) -> Ssrcs<'a> {
        let end = RTP_FIXED_HEADER_LEN_BYTES + 4 * usize::from(self.csrc_count());
        Ssrcs::new(self.buf.get(RTP_FIXED_HEADER_LEN_BYTES..end).unwrap_or(&[]))
    }

    /// The header extension, if the X bit is set.
    pub fn extension(&self) -> Option<RtpExtension<'a>> {
        if !self.has_extension() {
            return None;
        }
        let start = RTP_FIXED_HEADER_LEN_BYTES + 4 * usize::from(self.csrc_count());
        let data_start = start + EXTENSION_HEADER_LEN_BYTES;
        Some(RtpExtension {
            profile: be16(self.buf, start),
            data: self
                .buf
                .get(data_start..self.header_len_bytes)
                .unwrap_or(&[]),
        })
    }

    /// The payload: after the header, without the padding.
    pub fn payload(&self) -> &'a [u8] {
        let end = self.buf.len().saturating_sub(self.padding_len_bytes);
        self.buf.get(self.header_len_bytes..end).unwrap_or(&[])
    }
}

/// Validates the header and returns its length (fixed part, CSRCs,
/// extension).
fn header_len(buf: &[u8]) -> Result<usize, RtpError> {
    let len_bytes = buf.len();
    if len_bytes < RTP_FIXED_HEADER_LEN_BYTES {
        return Err(RtpError::TooShort { len_bytes });
    }
    let first = byte(buf, 0);
    let version = first >> 6;
    if version != VERSION {
        return Err(RtpError::BadVersion { version });
    }
    let csrc_count = first & 0x0f;
    let csrc_end = RTP_FIXED_HEADER_LEN_BYTES + 4 * usize::from(csrc_count);
    if csrc_end > len_bytes {
        return Err(RtpError::CsrcOverrun {
            csrc_count,
            len_bytes,
        });
    }
    if first & 0x10 == 0 {
        return Ok(csrc_end);
    }
    let mut needed_bytes = csrc_end + EXTENSION_HEADER_LEN_BYTES;
    if needed_bytes <= len_bytes {
        // The extension length counts 32-bit words after its own header.
        needed_bytes += 4 * usize::from(be16(buf, csrc_end + 2));
    }
    if needed_bytes > len_bytes {
        return Err(RtpError::ExtensionOverrun {
            needed_bytes,
            len_bytes,
        });
    }
    Ok(needed_bytes)
}

/// Validates the padding count (if P) and returns the padding length.
fn padding_len(buf: &[u8], header_len_bytes: usize) -> Result<usize, RtpError> {
    if byte(buf, 0) & 0x20 == 0 {
        return Ok(0);
    }
    let available_bytes = buf.len() - header_len_bytes;
    // With nothing after the header the last byte belongs to the header and
    // is no count; a count of zero is invalid because it includes itself.
    let padding_bytes = if available_bytes == 0 {
        0
    } else {
        byte(buf, buf.len() - 1)
    };
    if padding_bytes == 0 || usize::from(padding_bytes) > available_bytes {
        return Err(RtpError::BadPadding {
            padding_bytes,
            available_bytes,
        });
    }
    Ok(usize::from(padding_bytes))
}

/// An RTP header extension (RFC 3550 section 5.3.1): the profile-defined
/// 16 bits (0xBEDE for RFC 8285 one-byte elements) and the data after the
/// extension's own 4-byte header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpExtension<'a> {
    /// The "defined by profile" field.
    pub profile: u16,
    /// The extension data, a multiple of 4 bytes.
    pub data: &'a [u8],
}

/// An iterator over a list of 32-bit SSRC/CSRC identifiers read in place.
#[derive(Debug, Clone)]
pub struct Ssrcs<'a> {
    chunks: std::slice::ChunksExact<'a, u8>,
}

impl<'a> Ssrcs<'a> {
    fn new(list: &'a [u8]) -> Self {
        Self {
            chunks: list.chunks_exact(4),
        }
    }
}

impl Iterator for Ssrcs<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        self.chunks.next().map(|c| be32(c, 0))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.chunks.size_hint()
    }
}

impl ExactSizeIterator for Ssrcs<'_> {}

/// What arrived on a port shared by RTP and RTCP (rtcp-mux).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    /// An RTP packet.
    Rtp,
    /// An RTCP packet (or compound).
    Rtcp,
    /// Neither: shorter than 2 bytes or not version 2 (e.g. STUN or DTLS,
    /// which RFC 7983 tells apart by the first byte).
    Other,
}

/// Classifies a datagram on an rtcp-mux port, RFC 5761 section 4: the second
/// byte with the marker bit masked off is an RTCP packet type (200-204 and
/// the rest of 192-223) when it falls in 64..=95, which is why RTP payload
/// types 64-95 must not be used with rtcp-mux.
pub fn classify(buf: &[u8]) -> PacketKind {
    match buf {
        [first, second, ..] if first >> 6 == VERSION => {
            if (64..=95).contains(&(second & 0x7f)) {
                PacketKind::Rtcp
            } else {
                PacketKind::Rtp
            }
        }
        _ => PacketKind::Other,
    }
}

/// Why a datagram is not a valid (compound) RTCP packet. Offsets are those
/// of the offending packet's header within the compound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RtcpError {
    /// Fewer than 4 bytes left where a packet header should start (an empty
    /// datagram is this error at offset 0).
    #[error("RTCP header at offset {offset_bytes} truncated: {remaining_bytes} bytes left")]
    TruncatedHeader {
        /// Where the header should start.
        offset_bytes: usize,
        /// Bytes left in the datagram.
        remaining_bytes: usize,
    },
    /// The version field is not 2.
    #[error("RTCP version {version} at offset {offset_bytes}, expected 2")]
    BadVersion {
        /// Where the packet starts.
        offset_bytes: usize,
        /// The version found.
        version: u8,
    },
    /// The length field says more than the datagram holds.
    #[error("RTCP packet at offset {offset_bytes} of {packet_len_bytes} bytes overruns the {remaining_bytes} bytes left")]
    LengthOverrun {
        /// Where the packet starts.
        offset_bytes: usize,
        /// The packet length from its length field.
        packet_len_bytes: usize,
        /// Bytes left in the datagram.
        remaining_bytes: usize,
    },
    /// The P bit is set but the padding count is zero or larger than the
    /// packet after its header.
    #[error("RTCP padding of {padding_bytes} bytes at offset {offset_bytes}, packet body is {body_len_bytes} bytes")]
    BadPadding {
        /// Where the packet starts.
        offset_bytes: usize,
        /// The padding count, the packet's last byte.
        padding_bytes: u8,
        /// The packet's length after its 4-byte header.
        body_len_bytes: usize,
    },
    /// An SR or RR whose sender info or report blocks (the count in the
    /// header) do not fit in the packet.
    #[error("RTCP packet type {packet_type} at offset {offset_bytes} with {report_count} reports needs {needed_bytes} bytes, has {packet_len_bytes}")]
    ReportOverrun {
        /// Where the packet starts.
        offset_bytes: usize,
        /// 200 (SR) or 201 (RR).
        packet_type: u8,
        /// The report count in the header.
        report_count: u8,
        /// Bytes the SSRC, sender info and blocks need.
        needed_bytes: usize,
        /// The packet length without padding.
        packet_len_bytes: usize,
    },
}

/// RTCP packet types of RFC 3550 section 12.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcpType {
    /// 200, SR.
    SenderReport,
    /// 201, RR.
    ReceiverReport,
    /// 202, SDES.
    SourceDescription,
    /// 203, BYE.
    Goodbye,
    /// 204, APP.
    App,
    /// Any other type (e.g. 205/206 feedback, RFC 4585), passed through.
    Other(u8),
}

impl From<u8> for RtcpType {
    fn from(packet_type: u8) -> Self {
        match packet_type {
            200 => Self::SenderReport,
            201 => Self::ReceiverReport,
            202 => Self::SourceDescription,
            203 => Self::Goodbye,
            204 => Self::App,
            other => Self::Other(other),
        }
    }
}

/// A validated compound RTCP packet, borrowed from its datagram.
///
/// Validation follows RFC 3550 appendix A.2 for lengths (every packet fits,
/// the lengths add up to the datagram, padding counts are sane, SR/RR blocks
/// fit) but does not require the compound to start with an SR or RR, so
/// reduced-size RTCP (RFC 5506) parses too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtcpView<'a> {
    buf: &'a [u8],
}

impl<'a> RtcpView<'a> {
    /// Parses and validates every packet of a compound RTCP datagram.
    pub fn parse(buf: &'a [u8]) -> Result<Self, RtcpError> {
        let mut offset_bytes = 0;
        // Each packet is at least 4 bytes, so this runs at most len/4 times.
        loop {
            let packet_len_bytes = check_packet(buf, offset_bytes)?;
            offset_bytes += packet_len_bytes;
            if offset_bytes == buf.len() {
                return Ok(Self { buf });
            }
        }
    }

    /// The whole datagram the view was parsed from.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// The packets of the compound, in order.
    pub fn packets(&self) -> RtcpPackets<'a> {
        RtcpPackets { rest: self.buf }
    }
}

/// Validates the packet at `offset_bytes` and returns its length.
fn check_packet(buf: &[u8], offset_bytes: usize) -> Result<usize, RtcpError> {
    let rest = buf.get(offset_bytes..).unwrap_or(&[]);
    if rest.len() < RTCP_HEADER_LEN_BYTES {
        return Err(RtcpError::TruncatedHeader {
            offset_bytes,
            remaining_bytes: rest.len(),
        });
    }
    let version = byte(rest, 0) >> 6;
    if version != VERSION {
        return Err(RtcpError::BadVersion {
            offset_bytes,
            version,
        });
    }
    let packet_len_bytes = 4 * (usize::from(be16(rest, 2)) + 1);
    let Some(packet) = rest.get(..packet_len_bytes) else {
        return Err(RtcpError::LengthOverrun {
            offset_bytes,
            packet_len_bytes,
            remaining_bytes: rest.len(),
        });
    };
    let padding = rtcp_padding_len(packet, offset_bytes)?;
    check_reports(packet, offset_bytes, packet_len_bytes - padding)?;
    Ok(packet_len_bytes)
}

/// Validates the padding count of one packet and returns it (0 without P).
fn rtcp_padding_len(packet: &[u8], offset_bytes: usize) -> Result<usize, RtcpError> {
    if byte(packet, 0) & 0x20 == 0 {
        return Ok(0);
    }
    let body_len_bytes = packet.len() - RTCP_HEADER_LEN_BYTES;
    let padding_bytes = byte(packet, packet.len() - 1);
    if padding_bytes == 0 || usize::from(padding_bytes) > body_len_bytes {
        return Err(RtcpError::BadPadding {
            offset_bytes,
            padding_bytes,
            body_len_bytes,
        });
    }
    Ok(usize::from(padding_bytes))
}

/// Checks that an SR's or RR's SSRC, sender info and report blocks fit in
/// the packet without its padding; other types carry nothing we read.
fn check_reports(
    packet: &[u8],
    offset_bytes: usize,
    packet_len_bytes: usize,
) -> Result<(), RtcpError> {
    let packet_type = byte(packet, 1);
    let report_count = byte(packet, 0) & 0x1f;
    let needed_bytes = reports_end(RtcpType::from(packet_type), report_count);
    match needed_bytes {
        Some(needed_bytes) if needed_bytes > packet_len_bytes => Err(RtcpError::ReportOverrun {
            offset_bytes,
            packet_type,
            report_count,
            needed_bytes,
            packet_len_bytes,
        }),
        _ => Ok(()),
    }
}

/// Where the report blocks of an SR or RR end; `None` for other types.
fn reports_end(kind: RtcpType, report_count: u8) -> Option<usize> {
    let blocks_start = report_blocks_start(kind)?;
    Some(blocks_start + REPORT_BLOCK_LEN_BYTES * usize::from(report_count))
}

/// Where the report blocks of an SR or RR start; `None` for other types.
fn report_blocks_start(kind: RtcpType) -> Option<usize> {
    let sender_info_start = RTCP_HEADER_LEN_BYTES + SSRC_LEN_BYTES;
    match kind {
        RtcpType::SenderReport => Some(sender_info_start + SENDER_INFO_LEN_BYTES),
        RtcpType::ReceiverReport => Some(sender_info_start),
        _ => None,
    }
}

/// Iterator over the packets of a validated compound.
#[derive(Debug, Clone)]
pub struct RtcpPackets<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for RtcpPackets<'a> {
    type Item = RtcpPacket<'a>;

    fn next(&mut self) -> Option<RtcpPacket<'a>> {
        if self.rest.len() < RTCP_HEADER_LEN_BYTES {
            return None;
        }
        let len_bytes = 4 * (usize::from(be16(self.rest, 2)) + 1);
        // Validated by `RtcpView::parse`; `split_at_checked` keeps a broken
        // invariant from panicking.
        let (packet, rest) = self.rest.split_at_checked(len_bytes)?;
        self.rest = rest;
        Some(RtcpPacket { buf: packet })
    }
}

/// One packet of a compound RTCP datagram, header included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtcpPacket<'a> {
    buf: &'a [u8],
}

impl<'a> RtcpPacket<'a> {
    /// The packet's bytes: header, body and padding.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// The packet's length in bytes (from its length field).
    pub fn len_bytes(&self) -> usize {
        self.buf.len()
    }

    /// The version field (always 2 in a parsed view).
    pub fn version(&self) -> u8 {
        byte(self.buf, 0) >> 6
    }

    /// The P bit: the packet ends with padding.
    pub fn has_padding(&self) -> bool {
        byte(self.buf, 0) & 0x20 != 0
    }

    /// The 5-bit count field: report blocks in SR/RR, chunks in SDES,
    /// sources in BYE, subtype in APP.
    pub fn count(&self) -> u8 {
        byte(self.buf, 0) & 0x1f
    }

    /// The raw packet type byte.
    pub fn packet_type(&self) -> u8 {
        byte(self.buf, 1)
    }

    /// The packet type.
    pub fn kind(&self) -> RtcpType {
        RtcpType::from(self.packet_type())
    }

    /// The packet after its 4-byte header, without padding.
    pub fn body(&self) -> &'a [u8] {
        let end = self.buf.len().saturating_sub(self.padding_len_bytes());
        self.buf.get(RTCP_HEADER_LEN_BYTES..end).unwrap_or(&[])
    }

    /// Padding length, count byte included (0 without P).
    pub fn padding_len_bytes(&self) -> usize {
        if self.has_padding() {
            usize::from(byte(self.buf, self.buf.len().saturating_sub(1)))
        } else {
            0
        }
    }

    /// The SSRC of the sender of an SR or RR; `None` for other types.
    pub fn sender_ssrc(&self) -> Option<u32> {
        report_blocks_start(self.kind())?;
        Some(be32(self.buf, RTCP_HEADER_LEN_BYTES))
    }

    /// The sender info of an SR; `None` for other types.
    pub fn sender_info(&self) -> Option<SenderInfo> {
        if self.kind() != RtcpType::SenderReport {
            return None;
        }
        let at = RTCP_HEADER_LEN_BYTES + SSRC_LEN_BYTES;
        Some(SenderInfo {
            ntp_timestamp: be64(self.buf, at),
            rtp_timestamp: be32(self.buf, at + 8),
            packet_count: be32(self.buf, at + 12),
            octet_count: be32(self.buf, at + 16),
        })
    }

    /// The reception report blocks of an SR or RR (as many as the count
    /// field says); empty for other types.
    pub fn report_blocks(&self) -> ReportBlocks<'a> {
        let blocks = reports_end(self.kind(), self.count())
            .zip(report_blocks_start(self.kind()))
            .and_then(|(end, start)| self.buf.get(start..end))
            .unwrap_or(&[]);
        ReportBlocks {
            chunks: blocks.chunks_exact(REPORT_BLOCK_LEN_BYTES),
        }
    }
}

/// The sender info of an SR (RFC 3550 section 6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderInfo {
    /// Wallclock time of the report, 64-bit NTP format (seconds since 1900
    /// in the high 32 bits, fraction in the low 32).
    pub ntp_timestamp: u64,
    /// The same instant in RTP timestamp units.
    pub rtp_timestamp: u32,
    /// RTP packets sent since the start of transmission.
    pub packet_count: u32,
    /// RTP payload octets sent since the start of transmission.
    pub octet_count: u32,
}

impl SenderInfo {
    /// The middle 32 bits of the NTP timestamp: what a receiver echoes as
    /// LSR in its next report block.
    pub fn ntp_middle_32(&self) -> u32 {
        // Truncation keeps exactly bits 16..48, which is the point.
        (self.ntp_timestamp >> 16) as u32
    }
}

/// One reception report block (RFC 3550 section 6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlock {
    /// The source this block reports on.
    pub ssrc: u32,
    /// Fraction lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost, 24-bit signed (duplicates make it negative).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received (cycles in the high 16 bits).
    pub highest_seq: u32,
    /// Interarrival jitter, in RTP timestamp units.
    pub jitter_ts: u32,
    /// Last SR timestamp: middle 32 bits of its NTP time (0: no SR yet).
    pub lsr: u32,
    /// Delay since the last SR, in units of 1/65536 s.
    pub dlsr: u32,
}

impl ReportBlock {
    /// Decodes a 24-byte block.
    fn read(block: &[u8]) -> Self {
        let lost_word = be32(block, 4);
        // Shift the 24-bit field to the top and back to sign-extend it.
        let cumulative_lost = ((lost_word << 8) as i32) >> 8;
        Self {
            ssrc: be32(block, 0),
            fraction_lost: (lost_word >> 24) as u8,
            cumulative_lost,
            highest_seq: be32(block, 8),
            jitter_ts: be32(block, 12),
            lsr: be32(block, 16),
            dlsr: be32(block, 20),
        }
    }
}

/// Iterator over the report blocks of an SR or RR, decoded in place.
#[derive(Debug, Clone)]
pub struct ReportBlocks<'a> {
    chunks: std::slice::ChunksExact<'a, u8>,
}

impl Iterator for ReportBlocks<'_> {
    type Item = ReportBlock;

    fn next(&mut self) -> Option<ReportBlock> {
        self.chunks.next().map(ReportBlock::read)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.chunks.size_hint()
    }
}

impl ExactSizeIterator for ReportBlocks<'_> {}

/// The most `a=rtpmap` clock rates kept per stream.
pub const MAX_CLOCK_RATES: usize = 16;

/// The RTP clock rate of a static payload type (RFC 3551 tables 4 and 5);
/// 8 kHz for any other type, the most common rate of dynamic voice types.
pub fn static_clock_rate_hz(payload_type: u8) -> u32 {
    match payload_type {
        6 => 16_000,
        10 | 11 => 44_100,
        16 => 11_025,
        17 => 22_050,
        14 | 25 | 26 | 28 | 31..=34 => 90_000,
        _ => 8_000,
    }
}

/// The clock rates an SDP's `a=rtpmap` lines give its payload types
/// (Opus at 48 kHz, wideband codecs at 16 kHz), looked up per packet
/// without allocating; types it does not map fall back to
/// [`static_clock_rate_hz`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClockRates {
    entries: [(u8, u32); MAX_CLOCK_RATES],
    len: u8,
}

impl ClockRates {
    /// The first [`MAX_CLOCK_RATES`] non-zero rates of `rtpmaps`
    /// (payload type, clock rate); later ones are ignored.
    pub fn from_rtpmaps(rtpmaps: impl IntoIterator<Item = (u8, u32)>) -> Self {
        let mut rates = ClockRates::default();
        for (payload_type, rate_hz) in rtpmaps.into_iter().filter(|&(_, hz)| hz > 0) {
            let Some(slot) = rates.entries.get_mut(usize::from(rates.len)) else {
                break;
            };
            *slot = (payload_type, rate_hz);
            rates.len += 1;
        }
        rates
    }

    /// The clock rate of `payload_type`.
    pub fn rate_hz(&self, payload_type: u8) -> u32 {
        self.entries[..usize::from(self.len)]
            .iter()
            .find(|&&(pt, _)| pt == payload_type)
            .map_or_else(|| static_clock_rate_hz(payload_type), |&(_, hz)| hz)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A 12-byte header: V=2, given first-byte flags, M, PT 0, seq 0x1234,
    /// timestamp 0xdeadbeef, SSRC 0x11223344.
    fn header(flags: u8, marker_pt: u8) -> Vec<u8> {
        vec![
            0x80 | flags,
            marker_pt,
            0x12,
            0x34,
            0xde,
            0xad,
            0xbe,
            0xef,
            0x11,
            0x22,
            0x33,
            0x44,
        ]
    }

    #[test]
    fn fixed_header_fields() {
        let mut pkt = header(0, 0x80 | 8);
        pkt.extend_from_slice(b"payload");
        let v = RtpView::parse(&pkt).unwrap();
        assert_eq!(v.version(), 2);
        assert!(!v.has_padding());
        assert!(!v.has_extension());
        assert_eq!(v.csrc_count(), 0);
        assert!(v.marker());
        assert_eq!(v.payload_type(), 8);
        assert_eq!(v.sequence_number(), 0x1234);
        assert_eq!(v.timestamp(), 0xdead_beef);
        assert_eq!(v.ssrc(), 0x1122_3344);
        assert_eq!(v.csrcs().count(), 0);
        assert_eq!(v.extension(), None);
        assert_eq!(v.payload(), b"payload");
        assert_eq!(v.header_len_bytes(), 12);
        assert_eq!(v.len_bytes(), 19);
    }

    #[test]
    fn marker_clear_and_high_payload_type() {
        let pkt = header(0, 111);
        let v = RtpView::parse(&pkt).unwrap();
        assert!(!v.marker());
        assert_eq!(v.payload_type(), 111);
        assert_eq!(v.payload(), b"");
    }

    #[test]
    fn csrcs_are_listed_in_order() {
        let mut pkt = header(2, 0);
        pkt.extend_from_slice(&[0, 0, 0, 1, 0xff, 0xff, 0xff, 0xfe]);
        pkt.extend_from_slice(b"x");
        let v = RtpView::parse(&pkt).unwrap();
        assert_eq!(v.csrc_count(), 2);
        assert_eq!(v.csrcs().len(), 2);
        assert_eq!(v.csrcs().collect::<Vec<_>>(), [1, 0xffff_fffe]);
        assert_eq!(v.payload(), b"x");
    }

    #[test]
    fn extension_after_csrcs() {
        let mut pkt = header(0x10 | 1, 0);
        pkt.extend_from_slice(&[9, 9, 9, 9]); // CSRC
        pkt.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0xaa, 0, 0]);
        pkt.extend_from_slice(b"media");
        let v = RtpView::parse(&pkt).unwrap();
        let ext = v.extension().unwrap();
        assert_eq!(ext.profile, 0xbede);
        assert_eq!(ext.data, [0x10, 0xaa, 0, 0]);
        assert_eq!(v.header_len_bytes(), 12 + 4 + 8);
        assert_eq!(v.payload(), b"media");
    }

    #[test]
    fn empty_extension() {
        let mut pkt = header(0x10, 0);
        pkt.extend_from_slice(&[0x10, 0x00, 0, 0]);
        let v = RtpView::parse(&pkt).unwrap();
        assert_eq!(
            v.extension(),
            Some(RtpExtension {
                profile: 0x1000,
                data: &[]
            })
        );
        assert_eq!(v.payload(), b"");
    }

    #[test]
    fn padding_is_stripped_from_payload() {
        let mut pkt = header(0x20, 0);
        pkt.extend_from_slice(b"abc");
        pkt.extend_from_slice(&[0, 0, 3]);
        let v = RtpView::parse(&pkt).unwrap();
        assert!(v.has_padding());
        assert_eq!(v.padding_len_bytes(), 3);
        assert_eq!(v.payload(), b"abc");
    }

    #[test]
    fn padding_may_fill_the_whole_payload() {
        let mut pkt = header(0x20, 0);
        pkt.extend_from_slice(&[0, 0, 0, 4]);
        let v = RtpView::parse(&pkt).unwrap();
        assert_eq!(v.payload(), b"");
        assert_eq!(v.padding_len_bytes(), 4);
    }

    #[test]
    fn parse_header_leaves_padding_alone() {
        // SRTP: the last byte is the auth tag, not a padding count.
        let mut pkt = header(0x20, 0);
        pkt.extend_from_slice(&[1, 2, 3, 0xff]);
        assert!(matches!(
            RtpView::parse(&pkt),
            Err(RtpError::BadPadding { .. })
        ));
        let v = RtpView::parse_header(&pkt).unwrap();
        assert_eq!(v.payload(), [1, 2, 3, 0xff]);
    }

    #[test]
    fn malformed_rtp_gives_the_right_error() {
        let short = [0x80u8; 11];
        assert_eq!(
            RtpView::parse(&short),
            Err(RtpError::TooShort { len_bytes: 11 })
        );
        assert_eq!(
            RtpView::parse(&[]),
            Err(RtpError::TooShort { len_bytes: 0 })
        );

        let mut v1 = header(0, 0);
        v1[0] = 0x40;
        assert_eq!(
            RtpView::parse(&v1),
            Err(RtpError::BadVersion { version: 1 })
        );

        let mut csrc = header(3, 0);
        csrc.extend_from_slice(&[0; 8]);
        assert_eq!(
            RtpView::parse(&csrc),
            Err(RtpError::CsrcOverrun {
                csrc_count: 3,
                len_bytes: 20
            })
        );

        let mut ext_hdr = header(0x10, 0);
        ext_hdr.extend_from_slice(&[0xbe, 0xde]);
        assert_eq!(
            RtpView::parse(&ext_hdr),
            Err(RtpError::ExtensionOverrun {
                needed_bytes: 16,
                len_bytes: 14
            })
        );

        let mut ext_data = header(0x10, 0);
        ext_data.extend_from_slice(&[0xbe, 0xde, 0, 2, 0, 0, 0, 0]);
        assert_eq!(
            RtpView::parse(&ext_data),
            Err(RtpError::ExtensionOverrun {
                needed_bytes: 24,
                len_bytes: 20
            })
        );
    }

    #[test]
    fn malformed_padding_gives_the_right_error() {
        let mut too_big = header(0x20, 0);
        too_big.extend_from_slice(&[0, 0, 4]);
        assert_eq!(
            RtpView::parse(&too_big),
            Err(RtpError::BadPadding {
                padding_bytes: 4,
                available_bytes: 3
            })
        );

        let mut zero = header(0x20, 0);
        zero.extend_from_slice(&[7, 0]);
        assert_eq!(
            RtpView::parse(&zero),
            Err(RtpError::BadPadding {
                padding_bytes: 0,
                available_bytes: 2
            })
        );

        // Nothing after the header: the last byte is the SSRC's, no count.
        let bare = header(0x20, 0);
        assert_eq!(
            RtpView::parse(&bare),
            Err(RtpError::BadPadding {
                padding_bytes: 0,
                available_bytes: 0
            })
        );
    }

    /// An SR from SSRC 0x01020304 with one report block, then an SDES with
    /// one CNAME chunk: the usual compound a sender emits.
    fn sr_sdes() -> Vec<u8> {
        let mut c = vec![0x81, 200, 0, 12]; // V=2, RC=1, SR, 13 words
        c.extend_from_slice(&0x0102_0304u32.to_be_bytes());
        c.extend_from_slice(&0xe5f6_0000_8000_0000u64.to_be_bytes()); // NTP
        c.extend_from_slice(&160_000u32.to_be_bytes()); // RTP ts
        c.extend_from_slice(&500u32.to_be_bytes()); // packets
        c.extend_from_slice(&80_000u32.to_be_bytes()); // octets
        c.extend_from_slice(&0xaabb_ccddu32.to_be_bytes()); // block SSRC
        c.extend_from_slice(&[0x40, 0xff, 0xff, 0xfe]); // 25 %, lost -2
        c.extend_from_slice(&0x0001_0010u32.to_be_bytes()); // ext. highest seq
        c.extend_from_slice(&37u32.to_be_bytes()); // jitter
        c.extend_from_slice(&0x1234_5678u32.to_be_bytes()); // LSR
        c.extend_from_slice(&65_536u32.to_be_bytes()); // DLSR = 1 s
                                                       // SDES: one chunk, CNAME "ab", end, padded to 4 bytes.
        c.extend_from_slice(&[0x81, 202, 0, 2]);
        c.extend_from_slice(&0x0102_0304u32.to_be_bytes());
        c.extend_from_slice(&[1, 2, b'a', b'b']);
        c
    }

    #[test]
    fn compound_sr_sdes() {
        let buf = sr_sdes();
        assert_eq!(classify(&buf), PacketKind::Rtcp);
        let view = RtcpView::parse(&buf).unwrap();
        let packets: Vec<_> = view.packets().collect();
        assert_eq!(packets.len(), 2);

        let sr = packets[0];
        assert_eq!(sr.kind(), RtcpType::SenderReport);
        assert_eq!(sr.count(), 1);
        assert_eq!(sr.len_bytes(), 52);
        assert_eq!(sr.sender_ssrc(), Some(0x0102_0304));
        let info = sr.sender_info().unwrap();
        assert_eq!(info.ntp_timestamp, 0xe5f6_0000_8000_0000);
        assert_eq!(info.ntp_middle_32(), 0x0000_8000);
        assert_eq!(info.rtp_timestamp, 160_000);
        assert_eq!(info.packet_count, 500);
        assert_eq!(info.octet_count, 80_000);
        let blocks: Vec<_> = sr.report_blocks().collect();
        assert_eq!(
            blocks,
            [ReportBlock {
                ssrc: 0xaabb_ccdd,
                fraction_lost: 64,
                cumulative_lost: -2,
                highest_seq: 0x0001_0010,
                jitter_ts: 37,
                lsr: 0x1234_5678,
                dlsr: 65_536,
            }]
        );

        let sdes = packets[1];
        assert_eq!(sdes.kind(), RtcpType::SourceDescription);
        assert_eq!(sdes.sender_ssrc(), None);
        assert_eq!(sdes.sender_info(), None);
        assert_eq!(sdes.report_blocks().count(), 0);
        assert_eq!(sdes.body().len(), 8);
    }

    #[test]
    fn receiver_report_with_padding() {
        // RR, RC=1, one block, then 4 bytes of padding.
        let mut rr = vec![0xa1, 201, 0, 8];
        rr.extend_from_slice(&7u32.to_be_bytes());
        rr.extend_from_slice(&8u32.to_be_bytes());
        rr.extend_from_slice(&[0, 0x7f, 0xff, 0xff]); // lost = max positive
        rr.extend_from_slice(&[0; 16]);
        rr.extend_from_slice(&[0, 0, 0, 4]);
        let view = RtcpView::parse(&rr).unwrap();
        let p = view.packets().next().unwrap();
        assert_eq!(p.kind(), RtcpType::ReceiverReport);
        assert_eq!(p.sender_ssrc(), Some(7));
        assert_eq!(p.sender_info(), None);
        assert_eq!(p.padding_len_bytes(), 4);
        assert_eq!(p.body().len(), 28);
        let block = p.report_blocks().next().unwrap();
        assert_eq!(block.ssrc, 8);
        assert_eq!(block.cumulative_lost, 0x7f_ffff);
    }

    #[test]
    fn other_types_pass_through() {
        // BYE with one SSRC, then an RTPFB (205) feedback packet.
        let buf = [
            0x81, 203, 0, 1, 0, 0, 0, 9, 0x81, 205, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2,
        ];
        let kinds: Vec<_> = RtcpView::parse(&buf)
            .unwrap()
            .packets()
            .map(|p| p.kind())
            .collect();
        assert_eq!(kinds, [RtcpType::Goodbye, RtcpType::Other(205)]);
    }

    #[test]
    fn malformed_rtcp_gives_the_right_error() {
        assert_eq!(
            RtcpView::parse(&[]),
            Err(RtcpError::TruncatedHeader {
                offset_bytes: 0,
                remaining_bytes: 0
            })
        );
        let mut trailing = sr_sdes();
        trailing.extend_from_slice(&[0x80, 201]);
        assert_eq!(
            RtcpView::parse(&trailing),
            Err(RtcpError::TruncatedHeader {
                offset_bytes: 64,
                remaining_bytes: 2
            })
        );
        let mut version = sr_sdes();
        version[52] = 0x41;
        assert_eq!(
            RtcpView::parse(&version),
            Err(RtcpError::BadVersion {
                offset_bytes: 52,
                version: 1
            })
        );
        let mut overrun = sr_sdes();
        overrun[55] = 3;
        assert_eq!(
            RtcpView::parse(&overrun),
            Err(RtcpError::LengthOverrun {
                offset_bytes: 52,
                packet_len_bytes: 16,
                remaining_bytes: 12
            })
        );
        let mut padding = sr_sdes();
        padding[52] |= 0x20; // SDES claims padding; its last byte is b'b'
        assert_eq!(
            RtcpView::parse(&padding),
            Err(RtcpError::BadPadding {
                offset_bytes: 52,
                padding_bytes: b'b',
                body_len_bytes: 8
            })
        );
        let mut reports = sr_sdes();
        reports[0] = 0x82; // RC=2 but only one block
        assert_eq!(
            RtcpView::parse(&reports),
            Err(RtcpError::ReportOverrun {
                offset_bytes: 0,
                packet_type: 200,
                report_count: 2,
                needed_bytes: 76,
                packet_len_bytes: 52
            })
        );
        // An SR too short for its sender info even with RC=0.
        let short_sr = [0x80, 200, 0, 1, 0, 0, 0, 1];
        assert!(matches!(
            RtcpView::parse(&short_sr),
            Err(RtcpError::ReportOverrun {
                needed_bytes: 28,
                ..
            })
        ));
    }

    #[test]
    fn mux_demux_by_second_byte() {
        let rtp = header(0, 0);
        assert_eq!(classify(&rtp), PacketKind::Rtp);
        assert_eq!(classify(&header(0, 0x80 | 96)), PacketKind::Rtp);
        assert_eq!(classify(&header(0, 63)), PacketKind::Rtp);
        assert_eq!(classify(&header(0, 0x80 | 63)), PacketKind::Rtp);
        for pt in 192..=223u8 {
            assert_eq!(classify(&[0x80, pt]), PacketKind::Rtcp, "{pt}");
        }
        // Marker clear, PT 64-95: also RTCP's range (forbidden with mux).
        assert_eq!(classify(&[0x80, 72]), PacketKind::Rtcp);
        assert_eq!(classify(&[0x80]), PacketKind::Other);
        assert_eq!(classify(&[0x00, 0x01, 0, 0]), PacketKind::Other); // STUN
        assert_eq!(classify(&[22, 0xfe, 0xfd]), PacketKind::Other); // DTLS
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(v) = RtpView::parse(&buf) {
                let _ = (v.csrcs().count(), v.extension(), v.payload().len());
                prop_assert!(v.header_len_bytes() + v.padding_len_bytes() <= buf.len());
            }
            if let Ok(v) = RtpView::parse_header(&buf) {
                let _ = (v.csrcs().count(), v.extension(), v.payload().len());
            }
            if let Ok(v) = RtcpView::parse(&buf) {
                let mut total = 0;
                for p in v.packets() {
                    total += p.len_bytes();
                    let _ = (p.sender_ssrc(), p.sender_info(), p.body().len());
                    prop_assert_eq!(p.report_blocks().count(), match p.kind() {
                        RtcpType::SenderReport | RtcpType::ReceiverReport => usize::from(p.count()),
                        _ => 0,
                    });
                }
                prop_assert_eq!(total, buf.len());
            }
            let _ = classify(&buf);
        }

        #[test]
        fn version_2_bytes_never_panic(mut buf in proptest::collection::vec(any::<u8>(), 0..200)) {
            // Force V=2 into every plausible header position so the deeper
            // checks get exercised, not just the version check.
            for at in (0..buf.len()).step_by(4) {
                buf[at] = (buf[at] & 0x3f) | 0x80;
            }
            if let Ok(v) = RtpView::parse(&buf) {
                let _ = (v.csrcs().count(), v.extension(), v.payload().len());
            }
            if let Ok(v) = RtcpView::parse(&buf) {
                for p in v.packets() {
                    let _ = (p.sender_info(), p.report_blocks().count());
                }
            }
        }
    }

    #[test]
    fn clock_rates_come_from_rtpmap_then_the_static_table() {
        assert_eq!(static_clock_rate_hz(0), 8_000);
        assert_eq!(static_clock_rate_hz(9), 8_000);
        assert_eq!(static_clock_rate_hz(6), 16_000);
        assert_eq!(static_clock_rate_hz(26), 90_000);
        assert_eq!(static_clock_rate_hz(101), 8_000);
        let rates = ClockRates::from_rtpmaps([(111, 48_000), (101, 8_000), (96, 0)]);
        assert_eq!(rates.rate_hz(111), 48_000);
        assert_eq!(rates.rate_hz(101), 8_000);
        assert_eq!(rates.rate_hz(96), 8_000);
        assert_eq!(rates.rate_hz(26), 90_000);
        let many = ClockRates::from_rtpmaps((96..127).map(|pt| (pt, 16_000)));
        assert_eq!(many.rate_hz(96 + MAX_CLOCK_RATES as u8 - 1), 16_000);
        assert_eq!(many.rate_hz(96 + MAX_CLOCK_RATES as u8), 8_000);
    }
}
