package tpmext

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"

	"github.com/google/go-tpm/tpm2"
)

// AttestationKey is the public part of the key a TPM signs quotes with, in
// the two forms tpm2-tools reads: the TPM2B_PUBLIC (tpm2_createak -f tss)
// and a PEM SubjectPublicKeyInfo (tpm2_createak -f pem).
type AttestationKey struct {
	// Public is the marshalled TPM2B_PUBLIC; nil when the key was read
	// from PEM.
	Public []byte
	// Key is *ecdsa.PublicKey or *rsa.PublicKey.
	Key crypto.PublicKey
}

// ParseAttestationKey reads an attestation key from a TPM2B_PUBLIC (as
// tpm2_createak -u writes by default) or a PEM "PUBLIC KEY" block (-f pem).
func ParseAttestationKey(b []byte) (*AttestationKey, error) {
	if blk, _ := pem.Decode(b); blk != nil {
		if blk.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("tpmext: attestation key: PEM block %q, want PUBLIC KEY", blk.Type)
		}
		k, err := x509.ParsePKIXPublicKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("tpmext: attestation key: %w", err)
		}
		switch k.(type) {
		case *ecdsa.PublicKey, *rsa.PublicKey:
		default:
			return nil, fmt.Errorf("tpmext: attestation key is %T, want ECDSA or RSA", k)
		}
		return &AttestationKey{Key: k}, nil
	}
	if len(b) < 2 {
		return nil, fmt.Errorf("tpmext: attestation key: %d bytes, neither PEM nor a TPM2B_PUBLIC", len(b))
	}
	pub2b, err := tpm2.Unmarshal[tpm2.TPM2BPublic](b)
	if err != nil {
		return nil, fmt.Errorf("tpmext: attestation key: neither PEM nor a TPM2B_PUBLIC: %w", err)
	}
	if n := 2 + int(b[0])<<8 + int(b[1]); n != len(b) {
		return nil, fmt.Errorf("tpmext: attestation key: TPM2B_PUBLIC of %d bytes followed by %d more", n, len(b)-n)
	}
	pub, err := pub2b.Contents()
	if err != nil {
		return nil, fmt.Errorf("tpmext: attestation key: %w", err)
	}
	if !pub.ObjectAttributes.SignEncrypt || !pub.ObjectAttributes.Restricted {
		return nil, fmt.Errorf("tpmext: attestation key: TPM2B_PUBLIC is not a restricted signing key")
	}
	k, err := tpm2.Pub(*pub)
	if err != nil {
		return nil, fmt.Errorf("tpmext: attestation key: %w", err)
	}
	return &AttestationKey{Public: bytes.Clone(b), Key: k}, nil
}

// PEM returns the key as a PEM "PUBLIC KEY" block.
func (k *AttestationKey) PEM() ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(k.Key)
	if err != nil {
		return nil, fmt.Errorf("tpmext: attestation key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// AttestationKey returns the quote's key in both forms (Public is nil when
// the quote does not carry the TPM2B_PUBLIC).
func (q *Quote) AttestationKey() *AttestationKey {
	return &AttestationKey{Public: q.Public, Key: q.Key}
}

// ParseQuote reads a quote as tpm2_quote writes it: msg is the TPMS_ATTEST
// (-m), sig the TPMT_SIGNATURE (-s, the default tss format), ak the key
// (ParseAttestationKey). It checks the encodings only; Check and Verify
// check the signature and content.
func ParseQuote(msg, sig []byte, ak *AttestationKey) (*Quote, error) {
	q := &Quote{Attest: bytes.Clone(msg), Signature: bytes.Clone(sig), Key: ak.Key, Public: ak.Public}
	if _, err := q.Info(); err != nil {
		return nil, err
	}
	if _, err := parseSignature(sig); err != nil {
		return nil, err
	}
	return q, nil
}

// parseSignature decodes a TPMT_SIGNATURE that must fill b exactly.
func parseSignature(b []byte) (*tpm2.TPMTSignature, error) {
	s, err := tpm2.Unmarshal[tpm2.TPMTSignature](b)
	if err != nil {
		return nil, fmt.Errorf("tpmext: decoding TPMT_SIGNATURE: %w", err)
	}
	if n := len(tpm2.Marshal(s)); n != len(b) {
		return nil, fmt.Errorf("tpmext: TPMT_SIGNATURE of %d bytes followed by %d more", n, len(b)-n)
	}
	return s, nil
}

// verifySignature checks a TPMT_SIGNATURE over msg: ECDSA, RSASSA or
// RSAPSS with SHA-256, the hash the quote's PCR digest is computed with
// here.
func verifySignature(key crypto.PublicKey, msg, sig []byte) error {
	if key == nil {
		return fmt.Errorf("%w: no key", ErrQuoteSignature)
	}
	s, err := parseSignature(sig)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrQuoteSignature, err)
	}
	h := sha256.Sum256(msg)
	var hash tpm2.TPMIAlgHash
	var keyOK, valid bool
	switch s.SigAlg {
	case tpm2.TPMAlgECDSA:
		ecc, err := s.Signature.ECDSA()
		if err != nil {
			return fmt.Errorf("%w: %v", ErrQuoteSignature, err)
		}
		var k *ecdsa.PublicKey
		if k, keyOK = key.(*ecdsa.PublicKey); keyOK {
			r := new(big.Int).SetBytes(ecc.SignatureR.Buffer)
			sv := new(big.Int).SetBytes(ecc.SignatureS.Buffer)
			valid = ecdsa.Verify(k, h[:], r, sv)
		}
		hash = ecc.Hash
	case tpm2.TPMAlgRSASSA, tpm2.TPMAlgRSAPSS:
		var rs *tpm2.TPMSSignatureRSA
		if s.SigAlg == tpm2.TPMAlgRSASSA {
			rs, err = s.Signature.RSASSA()
		} else {
			rs, err = s.Signature.RSAPSS()
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrQuoteSignature, err)
		}
		var k *rsa.PublicKey
		if k, keyOK = key.(*rsa.PublicKey); keyOK {
			if s.SigAlg == tpm2.TPMAlgRSASSA {
				valid = rsa.VerifyPKCS1v15(k, crypto.SHA256, h[:], rs.Sig.Buffer) == nil
			} else {
				valid = rsa.VerifyPSS(k, crypto.SHA256, h[:], rs.Sig.Buffer, nil) == nil
			}
		}
		hash = rs.Hash
	default:
		return fmt.Errorf("%w: signature scheme %#x is not ECDSA, RSASSA or RSAPSS", ErrQuoteSignature, uint16(s.SigAlg))
	}
	switch {
	case hash != tpm2.TPMAlgSHA256:
		return fmt.Errorf("%w: signed with hash %v, only SHA-256 is supported", ErrQuoteSignature, Algorithm(hash))
	case !keyOK:
		return fmt.Errorf("%w: a signature of scheme %#x, but the key is %T", ErrQuoteSignature, uint16(s.SigAlg), key)
	case !valid:
		return ErrQuoteSignature
	}
	return nil
}

// ecdsaSignature is the TPMT_SIGNATURE of an ECDSA P-256/SHA-256
// signature (r, s), as a TPM returns it.
func ecdsaSignature(r, s *big.Int) []byte {
	return tpm2.Marshal(tpm2.TPMTSignature{
		SigAlg: tpm2.TPMAlgECDSA,
		Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgECDSA, &tpm2.TPMSSignatureECC{
			Hash:       tpm2.TPMAlgSHA256,
			SignatureR: tpm2.TPM2BECCParameter{Buffer: r.FillBytes(make([]byte, 32))},
			SignatureS: tpm2.TPM2BECCParameter{Buffer: s.FillBytes(make([]byte, 32))},
		}),
	})
}

// ecdsaPublic is the TPM2B_PUBLIC of a P-256 key made from akTemplate, as a
// TPM would report the attestation key.
func ecdsaPublic(k *ecdsa.PublicKey) []byte {
	pub := akTemplate
	raw, _ := k.ECDH() // P-256 keys always convert
	point := raw.Bytes()[1:]
	pub.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
		X: tpm2.TPM2BECCParameter{Buffer: point[:32]},
		Y: tpm2.TPM2BECCParameter{Buffer: point[32:]},
	})
	return tpm2.Marshal(tpm2.New2B(pub))
}
