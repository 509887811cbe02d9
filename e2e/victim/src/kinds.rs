//! What kind of loss a request was: the load's table counts each kind apart, since each
//! points at a different cause (a proxy without a backend, a pod gone, a listener closed).

use std::io::ErrorKind;

use serde::{Deserialize, Serialize};

use crate::client::Failure;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A proxy's answers: its backend failed (502), it had none (503), or it gave up (504).
    Proxy502,
    Proxy503,
    Proxy504,
    /// Any other answer that is not 2xx.
    OtherStatus,
    /// The connection was reset, or closed under a request being written.
    Reset,
    /// Closed by the peer before a whole response arrived.
    Closed,
    /// No connection: nothing listened.
    Refused,
    /// Nothing complete within the timeout.
    Timeout,
    Other,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::Proxy502,
        Kind::Proxy503,
        Kind::Proxy504,
        Kind::OtherStatus,
        Kind::Reset,
        Kind::Closed,
        Kind::Refused,
        Kind::Timeout,
        Kind::Other,
    ];

    /// The kind of an answer, None when it is 2xx.
    pub fn of_status(status: u16) -> Option<Kind> {
        match status {
            200..=299 => None,
            502 => Some(Kind::Proxy502),
            503 => Some(Kind::Proxy503),
            504 => Some(Kind::Proxy504),
            _ => Some(Kind::OtherStatus),
        }
    }

    pub fn of_failure(failure: &Failure) -> Kind {
        let io = |kind: &ErrorKind| match kind {
            ErrorKind::ConnectionRefused => Kind::Refused,
            ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted => {
                Kind::Reset
            }
            ErrorKind::TimedOut => Kind::Timeout,
            ErrorKind::UnexpectedEof => Kind::Closed,
            _ => Kind::Other,
        };
        match failure {
            Failure::Connect(e) => io(&e.kind()),
            Failure::Io(kind) => io(kind),
            Failure::Closed => Kind::Closed,
            Failure::Timeout => Kind::Timeout,
            Failure::BadUrl(_) | Failure::Exchange(_) => Kind::Other,
        }
    }

    /// The table's label.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Proxy502 => "502",
            Kind::Proxy503 => "503",
            Kind::Proxy504 => "504",
            Kind::OtherStatus => "other status",
            Kind::Reset => "reset",
            Kind::Closed => "closed",
            Kind::Refused => "refused",
            Kind::Timeout => "timeout",
            Kind::Other => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[test]
    fn statuses_are_told_apart_and_2xx_is_no_loss() {
        assert_eq!(Kind::of_status(200), None);
        assert_eq!(Kind::of_status(201), None);
        assert_eq!(Kind::of_status(502), Some(Kind::Proxy502));
        assert_eq!(Kind::of_status(503), Some(Kind::Proxy503));
        assert_eq!(Kind::of_status(504), Some(Kind::Proxy504));
        assert_eq!(Kind::of_status(500), Some(Kind::OtherStatus));
        assert_eq!(Kind::of_status(404), Some(Kind::OtherStatus));
    }

    #[test]
    fn failures_are_named_by_where_the_connection_broke() {
        let connect = |kind| Failure::Connect(io::Error::from(kind));
        assert_eq!(
            Kind::of_failure(&connect(ErrorKind::ConnectionRefused)),
            Kind::Refused
        );
        assert_eq!(
            Kind::of_failure(&connect(ErrorKind::ConnectionReset)),
            Kind::Reset
        );
        assert_eq!(
            Kind::of_failure(&Failure::Io(ErrorKind::ConnectionReset)),
            Kind::Reset
        );
        assert_eq!(
            Kind::of_failure(&Failure::Io(ErrorKind::BrokenPipe)),
            Kind::Reset
        );
        assert_eq!(Kind::of_failure(&Failure::Closed), Kind::Closed);
        assert_eq!(Kind::of_failure(&Failure::Timeout), Kind::Timeout);
        assert_eq!(
            Kind::of_failure(&Failure::Exchange("odd".to_owned())),
            Kind::Other
        );
    }
}
