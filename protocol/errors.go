package protocol

import (
	"errors"
	"fmt"
)

// DecodeError reports a frame, message or payload that this package refused
// to read or write. Code is the ErrorCode the receiving side should send in
// an Error message (and use as the QUIC stream error code) before closing the
// stream; Msg says what exactly was wrong.
type DecodeError struct {
	Code ErrorCode
	Msg  string
}

// Error implements error.
func (e *DecodeError) Error() string { return "protocol: " + e.Msg }

// errorf builds a *DecodeError with a formatted message.
func errorf(code ErrorCode, format string, args ...any) error {
	return &DecodeError{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// malformedf builds a *DecodeError with ErrCodeMalformed.
func malformedf(format string, args ...any) error {
	return errorf(ErrCodeMalformed, format, args...)
}

// Error implements error so that an Error received from the peer can be
// returned and inspected with CodeOf like any other error.
func (e *Error) Error() string {
	return fmt.Sprintf("protocol: peer error %d: %s", e.Code, e.Message)
}

// CodeOf returns the ErrorCode that describes err: the Code of a
// *DecodeError or *Error found in err's chain, ErrCodeNone for a nil error,
// and ErrCodeInternal for anything else.
func CodeOf(err error) ErrorCode {
	if err == nil {
		return ErrCodeNone
	}
	var de *DecodeError
	if errors.As(err, &de) {
		if de.Code == ErrCodeNone {
			return ErrCodeMalformed
		}
		return de.Code
	}
	var pe *Error
	if errors.As(err, &pe) {
		if pe.Code == ErrCodeNone {
			return ErrCodeInternal
		}
		return pe.Code
	}
	return ErrCodeInternal
}

// String returns the name of the code, e.g. "malformed".
func (c ErrorCode) String() string {
	switch c {
	case ErrCodeNone:
		return "none"
	case ErrCodeInternal:
		return "internal"
	case ErrCodeMalformed:
		return "malformed"
	case ErrCodeTooLarge:
		return "too_large"
	case ErrCodeUnsupported:
		return "unsupported"
	case ErrCodeUnauthenticated:
		return "unauthenticated"
	case ErrCodeForbidden:
		return "forbidden"
	case ErrCodeBadToken:
		return "bad_token"
	case ErrCodeUnavailable:
		return "unavailable"
	case ErrCodeProtocol:
		return "protocol"
	case ErrCodeShutdown:
		return "shutdown"
	case ErrCodeSeqReuse:
		return "seq_reuse"
	case ErrCodeGoingAway:
		return "going_away"
	}
	return fmt.Sprintf("code_%d", uint32(c))
}
