//! The tokenizer loading path: a `tokenizer.json`, or (input starting with a
//! NUL byte) a `vocab.json` + `merges.txt` pair split at the next NUL; a
//! tokenizer that loads then encodes and decodes a prompt.
#![no_main]

use libfuzzer_sys::fuzz_target;
use patchbench::model::Tokenizer;

fuzz_target!(|data: &[u8]| {
    let tok = match data.split_first() {
        Some((0, rest)) => {
            let cut = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            let (vocab, merges) = rest.split_at(cut);
            let merges = merges.get(1..).unwrap_or(&[]);
            Tokenizer::from_vocab_merges_bytes(vocab, merges, "fuzz vocab.json + merges.txt")
        }
        _ => Tokenizer::from_json_bytes(data, "fuzz tokenizer.json"),
    };
    if let Ok(tok) = tok {
        if let Ok(ids) = tok.encode("When Mary and John went to the store", None) {
            let _ = tok.decode(&ids);
            let _ = tok.token_strs(&ids);
        }
    }
});
