//! Prints a GGUF file's metadata (arrays abbreviated) and tensor infos.
fn main() {
    let path = std::env::args().nth(1).expect("usage: dump FILE.gguf");
    let f = match gguf::GgufFile::open(&path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    println!("version {} alignment {} data at {}", f.version(), f.alignment(), f.data_offset());
    for (k, v) in f.metadata() {
        match v {
            gguf::Value::Array(a) => println!("{k} = [{} x {}]", a.len(), a.type_name()),
            gguf::Value::String(s) if s.len() > 120 => println!("{k} = {:?}...", &s[..s.floor_char_boundary(120)]),
            v => println!("{k} = {v:?}"),
        }
    }
    for t in f.tensors() {
        println!("{} {:?} {} @{} {}B", t.name, t.dims, t.ggml_type, t.offset, t.n_bytes);
    }
}
