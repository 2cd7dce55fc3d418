//! Framing of the signalling protocol: each message is a 4-byte big-endian length followed by that
//! many bytes of UTF-8 JSON. Frames are never empty and never longer than [`MAX_FRAME`].

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest frame body, in bytes (protocol version 1).
pub const MAX_FRAME: usize = 64 * 1024;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The connection failed or ended in the middle of a frame.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The length prefix exceeds [`MAX_FRAME`].
    #[error("frame of {0} bytes exceeds the limit of {MAX_FRAME}")]
    TooLarge(usize),
    /// The length prefix is zero.
    #[error("empty frame")]
    Empty,
}

/// Reads one frame body into `buf`. `Ok(false)` means the peer closed the connection cleanly
/// between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
) -> Result<bool, FrameError> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    buf.resize(len, 0);
    reader.read_exact(buf).await?;
    Ok(true)
}

/// Encodes a message as one frame (length prefix included).
pub fn encode<T: serde::Serialize>(message: &T) -> Result<Vec<u8>, crate::Error> {
    let mut out = vec![0u8; 4];
    serde_json::to_writer(&mut out, message).map_err(|e| crate::Error::Protocol(e.to_string()))?;
    let len = out.len() - 4;
    if len > MAX_FRAME {
        return Err(crate::Error::InvalidArgument(format!(
            "message of {len} bytes exceeds the frame limit of {MAX_FRAME}"
        )));
    }
    out[..4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(out)
}

/// The length of `message` encoded as a frame body (its JSON), without encoding it into memory;
/// `usize::MAX` when it cannot be encoded. What a hop checks before accepting something it must
/// pass on: the encoded size, not the size of one field, decides whether it fits a frame.
pub fn encoded_len<T: serde::Serialize + ?Sized>(message: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, message) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

/// Writes an encoded frame and flushes it.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    frame: &[u8],
) -> std::io::Result<()> {
    writer.write_all(frame).await?;
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_limits() {
        let frame = encode(&serde_json::json!({"type": "ping", "nonce": 7})).unwrap();
        let mut reader = &frame[..];
        let mut buf = Vec::new();
        assert!(read_frame(&mut reader, &mut buf).await.unwrap());
        let back: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(back, serde_json::json!({"type": "ping", "nonce": 7}));
        assert!(
            !read_frame(&mut reader, &mut buf).await.unwrap(),
            "clean end"
        );

        let huge = ((MAX_FRAME + 1) as u32).to_be_bytes();
        assert!(matches!(
            read_frame(&mut &huge[..], &mut buf).await,
            Err(FrameError::TooLarge(_))
        ));
        assert!(matches!(
            read_frame(&mut &[0u8, 0, 0, 0][..], &mut buf).await,
            Err(FrameError::Empty)
        ));
        let truncated = [0u8, 0, 0, 9, b'{'];
        assert!(matches!(
            read_frame(&mut &truncated[..], &mut buf).await,
            Err(FrameError::Io(_))
        ));
        let too_big = "x".repeat(MAX_FRAME);
        assert!(encode(&too_big).is_err());
    }
}
