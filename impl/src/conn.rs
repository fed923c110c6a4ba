//! One client connection, as the service sees it. The service is written
//! against this trait so that the same code serves a UNIX socket and an
//! in-process exchange of bytes.

use std::io;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::net::RecvFlags;

/// A client connection.
pub trait Connection {
    /// Waits until input is available (or the peer closed), then says how
    /// many bytes are waiting, without consuming them. The flush protocol
    /// uses this to tell a master trigger (two bytes or fewer) from a
    /// request.
    fn wait_and_peek(&mut self) -> io::Result<usize>;
    /// Reads up to `buf.len()` bytes; 0 means end of input.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes all of `buf` and pushes it to the peer.
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Bounds how long [`Connection::wait_and_peek`] and
    /// [`Connection::read`] wait; a connection whose input is already all
    /// there has nothing to bound.
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let _ = timeout;
        Ok(())
    }
}

/// A connection whose whole input is known in advance, as when the client
/// sends one request in one write and waits for the reply.
#[derive(Debug, Clone, Default)]
pub struct MemoryConnection {
    input: Vec<u8>,
    position: usize,
    /// Everything the server wrote.
    pub output: Vec<u8>,
}

impl MemoryConnection {
    pub fn new(input: &[u8]) -> MemoryConnection {
        MemoryConnection {
            input: input.to_vec(),
            position: 0,
            output: Vec::new(),
        }
    }
}

impl Connection for MemoryConnection {
    fn wait_and_peek(&mut self) -> io::Result<usize> {
        Ok(self.input.len() - self.position)
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.input.len() - self.position);
        buf[..n].copy_from_slice(&self.input[self.position..self.position + n]);
        self.position += n;
        Ok(n)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.output.extend_from_slice(buf);
        Ok(())
    }
}

/// A client on the flush server's UNIX-domain socket (`public/flush`).
/// Its waits are `poll(2)` calls bounded by the read timeout, so that input
/// already there is read at once and a timeout costs no socket option.
#[derive(Debug)]
pub struct UnixConnection {
    stream: UnixStream,
    /// No bound when `None`.
    read_timeout: Option<Duration>,
}

impl UnixConnection {
    pub fn new(stream: UnixStream) -> UnixConnection {
        UnixConnection {
            stream,
            read_timeout: None,
        }
    }

    /// Waits until input (or the peer's close) is there.
    fn wait_readable(&self) -> io::Result<()> {
        let deadline = self.read_timeout.map(|t| Instant::now() + t);
        loop {
            let timeout = match deadline {
                None => None,
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "timeout waiting for input",
                        ));
                    }
                    // A wait too long for a timespec goes a second at a time.
                    Some(Timespec::try_from(left).unwrap_or(Timespec {
                        tv_sec: 1,
                        tv_nsec: 0,
                    }))
                }
            };
            let mut fds = [PollFd::new(&self.stream, PollFlags::IN)];
            match rustix::event::poll(&mut fds, timeout.as_ref()) {
                Ok(0) | Err(rustix::io::Errno::INTR) => continue,
                Ok(_) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl Connection for UnixConnection {
    fn wait_and_peek(&mut self) -> io::Result<usize> {
        self.wait_readable()?;

        // Count what is waiting without consuming it, as peekfd() does.
        let waiting = rustix::io::ioctl_fionread(&self.stream)?;
        Ok(usize::try_from(waiting).unwrap_or(usize::MAX))
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match rustix::net::recv(&self.stream, &mut *buf, RecvFlags::DONTWAIT) {
                Ok((n, _)) => return Ok(n),
                Err(rustix::io::Errno::AGAIN) => self.wait_readable()?,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        io::Write::write_all(&mut self.stream, buf)?;
        io::Write::flush(&mut self.stream)
    }

    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.read_timeout = timeout;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_connection_peeks_without_consuming() {
        let (client, server) = UnixStream::pair().unwrap();
        let mut conn = UnixConnection::new(server);
        io::Write::write_all(&mut &client, b"W\0").unwrap();
        assert_eq!(conn.wait_and_peek().unwrap(), 2);
        let mut buf = [0u8; 8];
        assert_eq!(conn.read(&mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], b"W\0");
    }

    #[test]
    fn unix_connection_wait_is_bounded_by_the_read_timeout() {
        let (_client, server) = UnixStream::pair().unwrap();
        let mut conn = UnixConnection::new(server);
        conn.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        assert!(conn.wait_and_peek().is_err());
    }

    #[test]
    fn memory_connection_says_how_much_is_waiting() {
        let mut conn = MemoryConnection::new(b"abc");
        assert_eq!(conn.wait_and_peek().unwrap(), 3);
        let mut buf = [0u8; 2];
        assert_eq!(conn.read(&mut buf).unwrap(), 2);
        assert_eq!(conn.wait_and_peek().unwrap(), 1);
    }
}
