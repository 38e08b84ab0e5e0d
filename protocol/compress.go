package protocol

import (
	"errors"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// zstdWindow is the largest zstd window the decoder accepts, which bounds
// its history buffer. encoderWindow (≤ zstdWindow) is the window frames are
// written with; larger payloads become multi-block frames.
const encoderWindow = 2 << 20

const zstdWindow = 8 << 20

// The encoder and decoder are shared by every goroutine: EncodeAll and
// DecodeAll are safe for concurrent use and keep GOMAXPROCS internal states.
var (
	zstdOnce sync.Once
	zstdEnc  *zstd.Encoder
	zstdDec  *zstd.Decoder
	zstdErr  error
)

func zstdInit() {
	zstdOnce.Do(func() {
		zstdEnc, zstdErr = zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.SpeedDefault),
			zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)),
			// Batches are rarely over a few hundred KB: a 2 MB window
			// compresses them as well as 8 MB does, and with lower-memory
			// mode keeps the agent's resident size down. Decoders still
			// accept zstdWindow.
			zstd.WithWindowSize(encoderWindow),
			zstd.WithLowerEncoderMem(true),
			zstd.WithZeroFrames(true),
		)
		if zstdErr != nil {
			return
		}
		zstdDec, zstdErr = zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(runtime.GOMAXPROCS(0)),
			zstd.WithDecoderMaxMemory(MaxDecodedPayload),
			zstd.WithDecoderMaxWindow(zstdWindow),
		)
	})
}

// Compress appends src compressed with codec to dst. Compressing more than
// MaxDecodedPayload bytes is refused, since no receiver would accept it.
func Compress(codec Codec, dst, src []byte) ([]byte, error) {
	if len(src) > MaxDecodedPayload {
		return dst, errorf(ErrCodeTooLarge, "compress: %d bytes exceed %d", len(src), MaxDecodedPayload)
	}
	switch codec {
	case CodecNone:
		return append(dst, src...), nil
	case CodecZstd:
		zstdInit()
		if zstdErr != nil {
			return dst, zstdErr
		}
		return zstdEnc.EncodeAll(src, dst), nil
	}
	return dst, errorf(ErrCodeUnsupported, "compress: unknown codec %d", uint8(codec))
}

// Decompress appends src decompressed with codec to dst. The output is
// bounded by MaxDecodedPayload: decompression stops with ErrCodeTooLarge as
// soon as it would exceed it, so a small hostile payload cannot expand into
// an unbounded allocation.
func Decompress(codec Codec, dst, src []byte) ([]byte, error) {
	switch codec {
	case CodecNone:
		if len(src) > MaxDecodedPayload {
			return dst, errorf(ErrCodeTooLarge, "decompress: %d bytes exceed %d", len(src), MaxDecodedPayload)
		}
		return append(dst, src...), nil
	case CodecZstd:
		zstdInit()
		if zstdErr != nil {
			return dst, zstdErr
		}
		start := len(dst)
		out, err := zstdDec.DecodeAll(src, dst)
		if err != nil {
			if errors.Is(err, zstd.ErrDecoderSizeExceeded) || errors.Is(err, zstd.ErrWindowSizeExceeded) {
				return dst, errorf(ErrCodeTooLarge, "decompress: zstd: %v (limit %d bytes)", err, MaxDecodedPayload)
			}
			return dst, malformedf("decompress: zstd: %v", err)
		}
		if len(out)-start > MaxDecodedPayload {
			return dst, errorf(ErrCodeTooLarge, "decompress: %d bytes exceed %d", len(out)-start, MaxDecodedPayload)
		}
		return out, nil
	}
	return dst, errorf(ErrCodeUnsupported, "decompress: unknown codec %d", uint8(codec))
}
