//! A structural JSON schema for `#[derive(Event)]` types, read from the field
//! types as written (no extra trait for users to derive). It covers what
//! drawings, the server's schema endpoint and input forms need: field names,
//! primitive types, arrays, maps, optional fields. Unknown types become `{}`
//! with a title naming the Rust type.

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};
use syn::{Attribute, Data, DeriveInput, Fields, GenericArgument, LitStr, PathArguments, Type};

pub fn schema_fn(input: &DeriveInput, name: &LitStr) -> TokenStream {
    let body = match &input.data {
        Data::Struct(data) => fields_schema(&data.fields, name),
        Data::Enum(data) if data.variants.iter().all(|v| v.fields.is_empty()) => {
            let variants = data
                .variants
                .iter()
                .map(|v| serde_name(&v.attrs).unwrap_or_else(|| v.ident.to_string()));
            quote!(::stepwise::__private::serde_json::json!({ "title": #name, "enum": [#(#variants),*] }))
        }
        _ => quote!(::stepwise::__private::serde_json::json!({ "title": #name })),
    };
    quote! {
        fn schema() -> ::stepwise::__private::serde_json::Value {
            #body
        }
    }
}

fn fields_schema(fields: &Fields, name: &LitStr) -> TokenStream {
    match fields {
        Fields::Named(named) => {
            let mut properties = Vec::new();
            let mut required = Vec::new();
            for field in &named.named {
                if has_serde_flag(&field.attrs, "skip") || has_serde_flag(&field.attrs, "skip_serializing") {
                    continue;
                }
                let key = serde_name(&field.attrs)
                    .unwrap_or_else(|| field.ident.as_ref().map(|i| i.to_string()).unwrap_or_default());
                let optional = option_inner(&field.ty).is_some() || has_serde_flag(&field.attrs, "default");
                if !optional {
                    required.push(key.clone());
                }
                let schema = type_schema(&field.ty);
                properties.push(quote!(#key: (#schema)));
            }
            quote!(::stepwise::__private::serde_json::json!({
                "title": #name,
                "type": "object",
                "properties": { #(#properties),* },
                "required": [#(#required),*]
            }))
        }
        Fields::Unnamed(unnamed) if unnamed.unnamed.len() == 1 => {
            let inner = type_schema(&unnamed.unnamed[0].ty);
            quote!({
                let mut schema = #inner;
                if let ::stepwise::__private::serde_json::Value::Object(map) = &mut schema {
                    map.insert("title".into(), #name.into());
                }
                schema
            })
        }
        Fields::Unnamed(unnamed) => {
            let items = unnamed.unnamed.iter().map(|f| type_schema(&f.ty));
            quote!(
                ::stepwise::__private::serde_json::json!({ "title": #name, "type": "array", "prefixItems": [#((#items)),*] })
            )
        }
        Fields::Unit => quote!(::stepwise::__private::serde_json::json!({ "title": #name, "type": "null" })),
    }
}

/// `#[serde(rename = "x")]`, if present.
fn serde_name(attrs: &[Attribute]) -> Option<String> {
    let mut name = None;
    for attr in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        let _ = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("rename") {
                if let Ok(value) = meta.value() {
                    if let Ok(lit) = value.parse::<LitStr>() {
                        name = Some(lit.value());
                    }
                }
            } else if meta.input.peek(syn::Token![=]) {
                let _: syn::Expr = meta.value()?.parse()?;
            } else if meta.input.peek(syn::token::Paren) {
                let _ = meta.parse_nested_meta(|_| Ok(()));
            }
            Ok(())
        });
    }
    name
}

fn has_serde_flag(attrs: &[Attribute], flag: &str) -> bool {
    attrs.iter().filter(|a| a.path().is_ident("serde")).any(|attr| {
        let mut found = false;
        let _ = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident(flag) {
                found = true;
            }
            if meta.input.peek(syn::Token![=]) {
                let _: syn::Expr = meta.value()?.parse()?;
            } else if meta.input.peek(syn::token::Paren) {
                let _ = meta.parse_nested_meta(|_| Ok(()));
            }
            Ok(())
        });
        found
    })
}

fn last_segment(ty: &Type) -> Option<(&syn::Ident, Vec<&Type>)> {
    let Type::Path(path) = ty else { return None };
    let segment = path.path.segments.last()?;
    let args = match &segment.arguments {
        PathArguments::AngleBracketed(args) => args
            .args
            .iter()
            .filter_map(|a| match a {
                GenericArgument::Type(t) => Some(t),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Some((&segment.ident, args))
}

fn option_inner(ty: &Type) -> Option<&Type> {
    match last_segment(ty)? {
        (ident, args) if ident == "Option" && args.len() == 1 => Some(args[0]),
        _ => None,
    }
}

fn type_schema(ty: &Type) -> TokenStream {
    let json = |tokens: TokenStream| quote!(::stepwise::__private::serde_json::json!(#tokens));
    match ty {
        Type::Reference(r) => return type_schema(&r.elem),
        Type::Array(a) => {
            let inner = type_schema(&a.elem);
            return json(quote!({ "type": "array", "items": (#inner) }));
        }
        Type::Tuple(t) if t.elems.is_empty() => return json(quote!({ "type": "null" })),
        _ => {}
    }
    let Some((ident, args)) = last_segment(ty) else {
        return json(quote!({}));
    };
    let name = ident.to_string();
    match (name.as_str(), args.as_slice()) {
        ("String" | "str" | "char" | "PathBuf" | "Cow", _) => json(quote!({ "type": "string" })),
        ("bool", _) => json(quote!({ "type": "boolean" })),
        ("u8" | "u16" | "u32" | "u64" | "u128" | "usize" | "i8" | "i16" | "i32" | "i64" | "i128" | "isize", _) => {
            json(quote!({ "type": "integer" }))
        }
        ("f32" | "f64", _) => json(quote!({ "type": "number" })),
        ("Value", _) => json(quote!({})),
        ("Option", [inner]) => {
            let inner = type_schema(inner);
            quote!({
                let mut schema = #inner;
                if let ::stepwise::__private::serde_json::Value::Object(map) = &mut schema {
                    map.insert("nullable".into(), true.into());
                }
                schema
            })
        }
        ("Vec" | "VecDeque" | "HashSet" | "BTreeSet" | "Box" | "Arc" | "Rc", [inner])
            if name != "Box" && name != "Arc" && name != "Rc" =>
        {
            let inner = type_schema(inner);
            json(quote!({ "type": "array", "items": (#inner) }))
        }
        ("Box" | "Arc" | "Rc", [inner]) => type_schema(inner),
        ("HashMap" | "BTreeMap" | "Map", [_, value]) => {
            let value = type_schema(value);
            json(quote!({ "type": "object", "additionalProperties": (#value) }))
        }
        _ => {
            let title = ty.to_token_stream().to_string().replace(' ', "");
            json(quote!({ "title": #title }))
        }
    }
}
