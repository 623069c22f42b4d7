//! `embed_migrations!` reads the migrations directory at compile time; without this, a new
//! migration file would not be embedded until something else forced a rebuild.

fn main() {
    println!("cargo::rerun-if-changed=../../migrations");
}
