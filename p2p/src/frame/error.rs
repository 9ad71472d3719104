//! Errors of the frame layer.

/// Why a frame could not be sealed or opened.
///
/// After any error other than [`FrameError::TooLarge`] from [`crate::frame::FrameSealer::seal`],
/// the keystream and MAC state of that direction are unusable and the link must be closed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The underlying transport failed.
    #[error("frame I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The header MAC did not match: the peer is not who the handshake said, or the stream is corrupt.
    #[error("frame header MAC mismatch")]
    HeaderMac,
    /// The frame MAC did not match the body ciphertext.
    #[error("frame MAC mismatch")]
    FrameMac,
    /// The frame-data is larger than the limit in force.
    #[error("frame of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Frame-data size stated by the header (opening) or requested by the caller (sealing).
        size: usize,
        /// Limit in force.
        max: usize,
    },
    /// The decoder was called again after it had failed; its cipher state is out of step.
    #[error("frame decoder used after an earlier error")]
    Poisoned,
}
