// swift-tools-version:5.9
// A small Swift app on the vcsdk package (../../bindings/swift, after its build-xcframework.sh):
// `swift run StreamFile --dir alice-id --server HOST:PORT ... bob clip.bin`.
import PackageDescription

let package = Package(
    name: "StreamFile",
    platforms: [.macOS(.v12)],
    dependencies: [.package(path: "../../bindings/swift")],
    targets: [
        .executableTarget(
            name: "StreamFile",
            dependencies: [.product(name: "VcSdk", package: "swift")],
            path: "Sources/StreamFile"
        ),
    ]
)
