use crate::helpers::*;
use reqwest::Method;

#[tokio::test]
async fn healthz_and_readyz_answer_200_without_a_key() {
    let app = spawn_app().await;
    for path in ["/healthz", "/readyz"] {
        let res = app.request(Method::GET, path, None, None).await;
        assert_eq!(res.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn unknown_paths_are_a_problem_json_404() {
    let app = spawn_app().await;
    let res = app
        .request(Method::GET, "/v2/nothing", Some(ADMIN), None)
        .await;
    assert_problem(res, 404, "not_found").await;
}
