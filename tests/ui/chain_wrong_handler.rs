use jisr::{Next, Registry, Request, ResponseWriter, chain};

async fn require_key(mut req: Request<'_>, mut w: ResponseWriter<'_>, next: Next<'_>) {
    if req.header("x-api-key").is_none() {
        return w.send(401, b"missing key\n");
    }
    next.run(&mut req, &mut w).await;
}

async fn hello(req: &mut Request<'_>, _w: ResponseWriter<'_>) {
    let _ = req.set_header("x-hello", "world");
}

fn register(r: &mut Registry) {
    r.register("hello", chain(require_key, hello));
}

fn main() {
    let _ = register;
}
