//! Errors as RFC 9457 `application/problem+json`.
//!
//! Policy: every failure a client can cause is a 4xx that says what was
//! wrong. A store failure is logged in one line and answered 503 (the
//! service is not able to answer now; the request may be retried), so a
//! client never sees a 500 with an internal message.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::layout::LayoutProblem;
use crate::store::StoreError;

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// For validation failures: every problem found, each tied to its feature.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub errors: Option<Vec<LayoutProblem>>,
}

/// An error an endpoint answers with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The `Accept` header admits no form this endpoint answers in (406).
    #[error("{0}")]
    NotAcceptable(String),
    /// An optional endpoint of a standard that kerbside does not serve (501).
    #[error("{0}")]
    NotImplemented(String),
    /// Well-formed, but not acceptable (422).
    #[error("{0}")]
    Unprocessable(String),
    #[error("too many requests from this client; retry after {retry_after} s")]
    TooManyRequests { retry_after: u64 },
    #[error("{detail}")]
    Invalid {
        detail: String,
        errors: Vec<LayoutProblem>,
    },
    #[error("the store is unavailable")]
    Store(#[from] StoreError),
}

impl ApiError {
    fn slug_title(&self) -> (&'static str, &'static str) {
        match self {
            ApiError::BadRequest(_) => ("bad-request", "Bad request"),
            ApiError::NotFound(_) => ("not-found", "Not found"),
            ApiError::Unauthorized(_) => ("unauthorized", "Unauthorized"),
            ApiError::Forbidden(_) => ("forbidden", "Forbidden"),
            ApiError::Conflict(_) => ("conflict", "Conflict"),
            ApiError::PreconditionFailed(_) => ("precondition-failed", "Precondition failed"),
            ApiError::PayloadTooLarge(_) => ("payload-too-large", "Payload too large"),
            ApiError::UnsupportedMediaType(_) => {
                ("unsupported-media-type", "Unsupported media type")
            }
            ApiError::NotAcceptable(_) => ("not-acceptable", "Not acceptable"),
            ApiError::NotImplemented(_) => ("not-implemented", "Not implemented"),
            ApiError::TooManyRequests { .. } => ("too-many-requests", "Too many requests"),
            ApiError::Invalid { .. } | ApiError::Unprocessable(_) => {
                ("validation", "Validation failed")
            }
            ApiError::Store(_) => ("store-unavailable", "Store unavailable"),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Invalid { .. } | ApiError::Unprocessable(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Store(e) = self {
            tracing::error!(error = %e, "store failure while answering a request");
        }
        let status = self.status_code();
        let (slug, title) = self.slug_title();
        let errors = match self {
            ApiError::Invalid { errors, .. } => Some(errors.clone()),
            _ => None,
        };
        let mut res = HttpResponse::build(status);
        if let ApiError::TooManyRequests { retry_after } = self {
            res.insert_header(("Retry-After", retry_after.to_string()));
        }
        if status == StatusCode::UNAUTHORIZED {
            res.insert_header(("WWW-Authenticate", "Bearer realm=\"kerbside\""));
        }
        res.content_type("application/problem+json").json(Problem {
            kind: format!("urn:kerbside:problem:{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: self.to_string(),
            errors,
        })
    }
}

/// Runs a blocking store call on the blocking pool.
pub async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    actix_web::web::block(f)
        .await
        .map_err(|e| ApiError::Store(StoreError::Corrupt(format!("blocking task failed: {e}"))))?
        .map_err(ApiError::from)
}
