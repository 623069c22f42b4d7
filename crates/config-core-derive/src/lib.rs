//! Derives for `config-core`: `#[derive(Config)]` on configuration sections and
//! `#[derive(ConfigEnum)]` on unit enums used as values. Use them through `config_core`.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as Tokens;
use quote::quote;
use syn::{
    Attribute, Data, DeriveInput, Error, Expr, Fields, Lit, LitStr, Path, parse_macro_input,
};

/// Implements `config_core::Config` for a struct with named fields.
///
/// Field attributes, inside `#[config(...)]`:
/// - `section` — the field is a nested section (its type derives `Config` too);
/// - `default = "text"` — the built-in default, written as it would be in a variable;
/// - `alias = "NAME"` — a conventional variable name besides the derived one (repeatable);
/// - `redact = "url"` — a secret URL shown as `scheme://user@host:port/db` instead of hidden.
///
/// Struct attribute: `#[config(validate = path::to::fn)]` — cross-field rules,
/// `fn(&Self, &mut config_core::Validator)`.
///
/// Doc comments become the key's description in `explain`, the template and the reference.
#[proc_macro_derive(Config, attributes(config))]
pub fn derive_config(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    config_impl(&input)
        .unwrap_or_else(Error::into_compile_error)
        .into()
}

/// Implements `config_core::ConfigEnum`, `ConfigValue` and `Display` for a unit enum.
/// Variants are named in snake_case unless `#[config(name = "...")]` says otherwise.
#[proc_macro_derive(ConfigEnum, attributes(config))]
pub fn derive_config_enum(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    enum_impl(&input)
        .unwrap_or_else(Error::into_compile_error)
        .into()
}

#[derive(Default)]
struct FieldAttrs {
    section: bool,
    default: Option<LitStr>,
    aliases: Vec<LitStr>,
    redact_url: bool,
    name: Option<LitStr>,
}

fn field_attrs(attrs: &[Attribute]) -> syn::Result<FieldAttrs> {
    let mut out = FieldAttrs::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("config")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("section") {
                out.section = true;
            } else if meta.path.is_ident("default") {
                out.default = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("alias") {
                out.aliases.push(meta.value()?.parse()?);
            } else if meta.path.is_ident("name") {
                out.name = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("redact") {
                let how: LitStr = meta.value()?.parse()?;
                if how.value() != "url" {
                    return Err(meta.error("the only redaction is \"url\""));
                }
                out.redact_url = true;
            } else {
                return Err(meta.error("unknown config attribute"));
            }
            Ok(())
        })?;
    }
    Ok(out)
}

fn doc(attrs: &[Attribute]) -> String {
    let lines: Vec<String> = attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta.require_name_value().ok()?.value {
            Expr::Lit(syn::ExprLit {
                lit: Lit::Str(s), ..
            }) => Some(s.value().trim().to_owned()),
            _ => None,
        })
        .collect();
    lines.join(" ").trim().to_owned()
}

fn config_impl(input: &DeriveInput) -> syn::Result<Tokens> {
    let name = &input.ident;
    let Data::Struct(data) = &input.data else {
        return Err(Error::new_spanned(
            input,
            "#[derive(Config)] needs a struct with named fields",
        ));
    };
    let Fields::Named(fields) = &data.fields else {
        return Err(Error::new_spanned(
            input,
            "#[derive(Config)] needs named fields",
        ));
    };
    let mut validate_hook: Option<Path> = None;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("config")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("validate") {
                validate_hook = Some(meta.value()?.parse()?);
                Ok(())
            } else {
                Err(meta.error("unknown config attribute; expected `validate = path`"))
            }
        })?;
    }

    let mut describe = Vec::new();
    let mut extract = Vec::new();
    let mut idents = Vec::new();
    for field in &fields.named {
        let ident = field.ident.as_ref().expect("named field");
        let ty = &field.ty;
        let attrs = field_attrs(&field.attrs)?;
        let key = ident.to_string();
        let doc = doc(&field.attrs);
        if doc.is_empty() {
            return Err(Error::new_spanned(
                field,
                "document every configuration key: its doc comment is its description",
            ));
        }
        if attrs.section {
            if attrs.default.is_some() || !attrs.aliases.is_empty() || attrs.redact_url {
                return Err(Error::new_spanned(
                    field,
                    "a section takes no default, alias or redact",
                ));
            }
            describe.push(
                quote! { schema.section(#key, #doc, <#ty as ::config_core::Config>::describe); },
            );
            extract.push(quote! { let #ident = ex.section::<#ty>(#key); });
        } else {
            let default = match &attrs.default {
                Some(d) => quote! { ::core::option::Option::Some(#d) },
                None => quote! { ::core::option::Option::None },
            };
            let aliases = &attrs.aliases;
            let redaction = if attrs.redact_url {
                quote! { ::config_core::Redaction::Url }
            } else {
                quote! { ::config_core::Redaction::Hidden }
            };
            describe.push(quote! {
                schema.key::<#ty>(#key, ::config_core::KeyAttrs {
                    doc: #doc,
                    default: #default,
                    aliases: &[#(#aliases),*],
                    redaction: #redaction,
                });
            });
            extract.push(quote! { let #ident = ex.value::<#ty>(#key); });
        }
        idents.push(ident);
    }
    let validate = validate_hook.map(|path| {
        quote! {
            fn validate(&self, v: &mut ::config_core::Validator<'_>) {
                #path(self, v);
            }
        }
    });
    Ok(quote! {
        impl ::config_core::Config for #name {
            fn describe(schema: &mut ::config_core::SchemaBuilder) {
                #(#describe)*
            }
            fn extract(ex: &mut ::config_core::Extractor<'_>) -> ::core::option::Option<Self> {
                #(#extract)*
                ::core::option::Option::Some(Self { #(#idents: #idents?,)* })
            }
            #validate
        }
    })
}

fn snake_case(ident: &str) -> String {
    let mut out = String::new();
    for (i, c) in ident.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn enum_impl(input: &DeriveInput) -> syn::Result<Tokens> {
    let name = &input.ident;
    let Data::Enum(data) = &input.data else {
        return Err(Error::new_spanned(
            input,
            "#[derive(ConfigEnum)] needs a unit enum",
        ));
    };
    let mut names = Vec::new();
    let mut variants = Vec::new();
    for variant in &data.variants {
        if !matches!(variant.fields, Fields::Unit) {
            return Err(Error::new_spanned(
                variant,
                "ConfigEnum variants carry no data",
            ));
        }
        let attrs = field_attrs(&variant.attrs)?;
        names.push(
            attrs
                .name
                .map(|n| n.value())
                .unwrap_or_else(|| snake_case(&variant.ident.to_string())),
        );
        variants.push(&variant.ident);
    }
    Ok(quote! {
        impl ::config_core::ConfigEnum for #name {
            const VARIANTS: &'static [(&'static str, Self)] = &[#((#names, #name::#variants)),*];
            const NAMES: &'static [&'static str] = &[#(#names),*];
            fn name(self) -> &'static str {
                match self { #(#name::#variants => #names,)* }
            }
        }
        impl ::config_core::ConfigValue for #name {
            const KIND: ::config_core::ValueKind =
                ::config_core::ValueKind::OneOf(<#name as ::config_core::ConfigEnum>::NAMES);
            fn parse(raw: &::config_core::RawValue) -> ::core::result::Result<Self, ::std::string::String> {
                ::config_core::parse_enum(raw)
            }
        }
        impl ::core::fmt::Display for #name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(::config_core::ConfigEnum::name(*self))
            }
        }
    })
}
