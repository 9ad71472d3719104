//! Strict helpers over the `rlp` crate for decoding hostile base protocol payloads.
//!
//! `rlp::Rlp`'s own list iterator stops silently at the first malformed item, so a
//! list with a truncated tail would look like a shorter valid list. These helpers
//! walk a list with the crate's header parser and fail on any byte that is not part
//! of a well-formed item.

use super::BaseError;
use rlp::Rlp;

/// The single RLP item that must make up all of `payload`.
pub(crate) fn whole<'a>(payload: &'a [u8], context: &'static str) -> Result<Rlp<'a>, BaseError> {
    let rlp = Rlp::new(payload);
    let info = rlp.payload_info().map_err(|e| BaseError::rlp(context, e))?;
    let total = info.total();
    if total != payload.len() {
        return Err(BaseError::TrailingBytes {
            context,
            extra: payload.len().saturating_sub(total),
        });
    }
    Ok(rlp)
}

/// The items of a list, each a complete RLP item; errors if `item` is not a list or
/// its payload is not an exact sequence of items.
pub(crate) fn list<'a>(item: &Rlp<'a>, context: &'static str) -> Result<Vec<Rlp<'a>>, BaseError> {
    if !item.is_list() {
        return Err(BaseError::rlp(context, "expected a list"));
    }
    let info = item
        .payload_info()
        .map_err(|e| BaseError::rlp(context, e))?;
    let mut rest = item
        .as_raw()
        .get(info.header_len..info.total())
        .ok_or_else(|| BaseError::rlp(context, "list shorter than its header says"))?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let len = Rlp::new(rest)
            .payload_info()
            .map_err(|e| BaseError::rlp(context, e))?
            .total();
        let (this, tail) = rest
            .split_at_checked(len)
            .ok_or_else(|| BaseError::rlp(context, "item runs past the end of its list"))?;
        out.push(Rlp::new(this));
        rest = tail;
    }
    Ok(out)
}

/// A canonical RLP unsigned integer of at most 64 bits.
pub(crate) fn uint(item: &Rlp<'_>, context: &'static str) -> Result<u64, BaseError> {
    if item.is_list() {
        return Err(BaseError::rlp(context, "expected an integer, got a list"));
    }
    item.as_val::<u64>().map_err(|e| BaseError::rlp(context, e))
}

/// An RLP byte string.
pub(crate) fn bytes(item: &Rlp<'_>, context: &'static str) -> Result<Vec<u8>, BaseError> {
    if item.is_list() {
        return Err(BaseError::rlp(context, "expected a string, got a list"));
    }
    item.as_val::<Vec<u8>>()
        .map_err(|e| BaseError::rlp(context, e))
}
