//! `#[derive(Action)]`: an enum as the action type of nodes.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Data, DeriveInput, Error, LitStr};

use crate::errors::Errors;

/// The label of a variant: `#[action(rename = "...")]`, else its name in snake_case.
fn label(variant: &syn::Variant) -> syn::Result<String> {
    let mut renamed = None;
    for attr in variant.attrs.iter().filter(|a| a.path().is_ident("action")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("rename") {
                if renamed.is_some() {
                    return Err(meta.error("`rename` is given twice"));
                }
                let lit: LitStr = meta.value()?.parse()?;
                if lit.value().is_empty() {
                    return Err(Error::new_spanned(&lit, "an action label cannot be empty"));
                }
                renamed = Some(lit.value());
                Ok(())
            } else {
                Err(meta.error("unknown `action` option; expected `rename = \"label\"`"))
            }
        })?;
    }
    Ok(renamed.unwrap_or_else(|| snake_case(&variant.ident.to_string())))
}

/// `GiveUp` → `give_up`, `HTTPError` → `http_error`, `URLFetch2` → `url_fetch2`.
pub(crate) fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev_lower = i > 0 && (chars[i - 1].is_lowercase() || chars[i - 1].is_ascii_digit());
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            let prev_upper = i > 0 && chars[i - 1].is_uppercase();
            if prev_lower || (prev_upper && next_lower) {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

pub(crate) fn derive(input: DeriveInput) -> syn::Result<TokenStream> {
    let Data::Enum(data) = &input.data else {
        return Err(Error::new_spanned(&input.ident, "`Action` can only be derived for enums"));
    };
    if data.variants.is_empty() {
        return Err(Error::new_spanned(&input.ident, "`Action` needs an enum with at least one variant"));
    }
    let mut errors = Errors::default();
    let mut labels: Vec<(String, &syn::Ident)> = Vec::new();
    for variant in &data.variants {
        match label(variant) {
            Ok(l) => {
                if let Some((_, first)) = labels.iter().find(|(seen, _)| *seen == l) {
                    errors.at(
                        &variant.ident,
                        format!("variants `{first}` and `{}` have the same label \"{l}\"", variant.ident),
                    );
                }
                labels.push((l, &variant.ident));
            }
            Err(e) => errors.push(e),
        }
    }
    errors.finish()?;
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let arms: Vec<TokenStream> = labels.iter().map(|(l, ident)| quote!(Self::#ident { .. } => #l)).collect();
    let label_strs = labels.iter().map(|(l, _)| l);
    let variant_names = data.variants.iter().map(|v| v.ident.to_string());
    Ok(quote! {
        #[automatically_derived]
        impl #impl_generics ::minllm::Action for #name #ty_generics #where_clause {
            fn label(&self) -> &str {
                match self { #(#arms,)* }
            }
            fn declared() -> ::core::option::Option<&'static [&'static str]> {
                ::core::option::Option::Some(&[#(#label_strs),*])
            }
            fn into_label(self) -> ::minllm::Label {
                ::minllm::Label::new_static(match self { #(#arms,)* })
            }
            const __VARIANTS: ::core::option::Option<&'static [&'static str]> =
                ::core::option::Option::Some(&[#(#variant_names),*]);
        }

        #[automatically_derived]
        impl #impl_generics ::minllm::__private::Routable for #name #ty_generics #where_clause {
            type Routed = Self;
            #[inline(always)]
            fn routed(self) -> Self {
                self
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::snake_case;

    #[test]
    fn snake_case_keeps_acronyms_together() {
        assert_eq!(snake_case("GiveUp"), "give_up");
        assert_eq!(snake_case("HTTPError"), "http_error");
        assert_eq!(snake_case("URLFetch"), "url_fetch");
        assert_eq!(snake_case("Search"), "search");
        assert_eq!(snake_case("V2Answer"), "v2_answer");
    }
}
