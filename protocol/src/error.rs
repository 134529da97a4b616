//! NSQ error codes and the error a server reports to a client.

use std::fmt;

/// The `E_*` codes an nsqd writes in error frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// `E_BAD_PROTOCOL`: wrong magic.
    BadProtocol,
    /// `E_INVALID`: unknown command, wrong state, bad parameter.
    Invalid,
    /// `E_BAD_BODY`: body size or content problems (IDENTIFY, AUTH, MPUB).
    BadBody,
    /// `E_BAD_TOPIC`: invalid topic name.
    BadTopic,
    /// `E_BAD_CHANNEL`: invalid channel name.
    BadChannel,
    /// `E_BAD_MESSAGE`: message size problems.
    BadMessage,
    /// `E_IDENTIFY_FAILED`: negotiation or upgrade failure.
    IdentifyFailed,
    /// `E_AUTH_DISABLED`: AUTH on a node without auth.
    AuthDisabled,
    /// `E_AUTH_FAILED`: the auth server call failed.
    AuthFailed,
    /// `E_AUTH_FIRST`: a command that needs AUTH came first.
    AuthFirst,
    /// `E_UNAUTHORIZED`: no permission for this topic/channel.
    Unauthorized,
    /// `E_SUB_FAILED`.
    SubFailed,
    /// `E_PUB_FAILED`.
    PubFailed,
    /// `E_MPUB_FAILED`.
    MpubFailed,
    /// `E_DPUB_FAILED`.
    DpubFailed,
    /// `E_FIN_FAILED` (non-fatal).
    FinFailed,
    /// `E_REQ_FAILED` (non-fatal).
    ReqFailed,
    /// `E_TOUCH_FAILED` (non-fatal).
    TouchFailed,
}

impl ErrorCode {
    /// Every code, for round-trip tests and lookups.
    pub const ALL: [ErrorCode; 18] = [
        Self::BadProtocol,
        Self::Invalid,
        Self::BadBody,
        Self::BadTopic,
        Self::BadChannel,
        Self::BadMessage,
        Self::IdentifyFailed,
        Self::AuthDisabled,
        Self::AuthFailed,
        Self::AuthFirst,
        Self::Unauthorized,
        Self::SubFailed,
        Self::PubFailed,
        Self::MpubFailed,
        Self::DpubFailed,
        Self::FinFailed,
        Self::ReqFailed,
        Self::TouchFailed,
    ];

    /// The wire spelling, e.g. `E_INVALID`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadProtocol => "E_BAD_PROTOCOL",
            Self::Invalid => "E_INVALID",
            Self::BadBody => "E_BAD_BODY",
            Self::BadTopic => "E_BAD_TOPIC",
            Self::BadChannel => "E_BAD_CHANNEL",
            Self::BadMessage => "E_BAD_MESSAGE",
            Self::IdentifyFailed => "E_IDENTIFY_FAILED",
            Self::AuthDisabled => "E_AUTH_DISABLED",
            Self::AuthFailed => "E_AUTH_FAILED",
            Self::AuthFirst => "E_AUTH_FIRST",
            Self::Unauthorized => "E_UNAUTHORIZED",
            Self::SubFailed => "E_SUB_FAILED",
            Self::PubFailed => "E_PUB_FAILED",
            Self::MpubFailed => "E_MPUB_FAILED",
            Self::DpubFailed => "E_DPUB_FAILED",
            Self::FinFailed => "E_FIN_FAILED",
            Self::ReqFailed => "E_REQ_FAILED",
            Self::TouchFailed => "E_TOUCH_FAILED",
        }
    }

    /// Only FIN, REQ and TOUCH failures leave the connection open.
    pub fn is_fatal(self) -> bool {
        !matches!(self, Self::FinFailed | Self::ReqFailed | Self::TouchFailed)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ErrorCode {
    type Err = ();
    fn from_str(text: &str) -> Result<Self, ()> {
        Self::ALL
            .into_iter()
            .find(|code| code.as_str() == text)
            .ok_or(())
    }
}

/// An error the server reports to one client as an error frame: `<CODE> <description>`.
///
/// Whether the connection closes afterwards follows from the code ([`ErrorCode::is_fatal`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ClientError {
    /// The NSQ error code.
    pub code: ErrorCode,
    /// The human-readable part, exactly as upstream words it (may be empty).
    pub desc: String,
}

impl ClientError {
    /// Builds an error with a description.
    pub fn new(code: ErrorCode, desc: impl Into<String>) -> Self {
        Self {
            code,
            desc: desc.into(),
        }
    }

    /// `E_INVALID <desc>`.
    pub fn invalid(desc: impl Into<String>) -> Self {
        Self::new(ErrorCode::Invalid, desc)
    }

    /// Whether the server closes the connection after reporting this error.
    pub fn is_fatal(&self) -> bool {
        self.code.is_fatal()
    }

    /// The bytes of the error frame's data: the code, then a space and the description if any.
    pub fn to_frame_data(&self) -> String {
        if self.desc.is_empty() {
            self.code.as_str().to_owned()
        } else {
            format!("{} {}", self.code.as_str(), self.desc)
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_frame_data())
    }
}

/// Errors from decoding wire data.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The peer sent something the server must answer with an error frame.
    #[error("{0}")]
    Client(#[from] ClientError),
    /// A command line exceeded the line limit; upstream drops such a connection silently.
    #[error("command line longer than {max} bytes")]
    LineTooLong {
        /// The limit that was exceeded.
        max: usize,
    },
    /// A frame from the server was malformed (client side).
    #[error("malformed frame: {0}")]
    BadFrame(String),
    /// The underlying transport failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The server answered with an error frame; this is its data, e.g.
    /// `E_INVALID invalid command FOO` (client side).
    #[error("{0}")]
    ErrorFrame(String),
    /// The server sent a frame the client did not expect at this point (client side).
    #[error("unexpected {0}")]
    UnexpectedFrame(String),
    /// The connection is closed (client side).
    #[error("connection closed")]
    Closed,
    /// Nothing arrived within the given time (client side).
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
}

impl ProtocolError {
    /// The NSQ error code of a [`ProtocolError::Client`] error, or of a
    /// [`ProtocolError::ErrorFrame`] whose first word is a known code.
    pub fn error_code(&self) -> Option<ErrorCode> {
        match self {
            Self::Client(error) => Some(error.code),
            Self::ErrorFrame(text) => text.split(' ').next()?.parse().ok(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_fatality() {
        for code in ErrorCode::ALL {
            assert_eq!(code.as_str().parse::<ErrorCode>(), Ok(code));
        }
        let fatal: Vec<_> = ErrorCode::ALL.iter().filter(|c| !c.is_fatal()).collect();
        assert_eq!(
            fatal,
            [
                &ErrorCode::FinFailed,
                &ErrorCode::ReqFailed,
                &ErrorCode::TouchFailed
            ]
        );
        assert_eq!(
            ClientError::invalid("invalid command ").to_frame_data(),
            "E_INVALID invalid command "
        );
        assert_eq!(
            ClientError::new(ErrorCode::BadProtocol, "").to_frame_data(),
            "E_BAD_PROTOCOL"
        );
    }
}
